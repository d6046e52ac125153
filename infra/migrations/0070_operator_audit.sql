-- The operator audit (projection operator_audit): who asked for what, when, why, and to which
-- SIMs. One row per operator command and action (a 500-SIM cancel is one row listing the 500
-- ICCIDs); requests nobody typed (requested_by = 'system') are not here.
CREATE TABLE operator_audit (
    command_id   text        NOT NULL,
    action       text        NOT NULL,
    actor        text        NOT NULL,
    channel      text        NOT NULL,
    requested_at timestamptz NOT NULL,
    reason       text,
    target       text,
    subjects     text[]      NOT NULL,
    events       integer     NOT NULL,
    PRIMARY KEY (command_id, action)
);
CREATE INDEX operator_audit_recent ON operator_audit (requested_at DESC, command_id DESC, action DESC);
CREATE INDEX operator_audit_actor ON operator_audit (actor, requested_at DESC);
CREATE INDEX operator_audit_action ON operator_audit (action, requested_at DESC);
CREATE INDEX operator_audit_subjects ON operator_audit USING gin (subjects);

-- The events counted in each row: a redelivered or re-published event counts once, while the
-- same request asked for again by a later command (a re-imported sheet) counts in both.
CREATE TABLE operator_audit_events (
    event_id   text NOT NULL,
    command_id text NOT NULL,
    PRIMARY KEY (event_id, command_id)
);
