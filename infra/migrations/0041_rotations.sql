-- MDN rotations: daily claims and retries by producers/scheduler.py, outcomes by
-- consumers/rotation.py. Coordination state, not a projection: replay keeps it.
--
-- One row per SIM and rotation key: the day ("rotation:<date>", shared by that day's retries)
-- or an operator's ref. Inserting the row is how a scheduler claims a SIM's daily request (two
-- schedulers: one insert wins); its state is how the consumer refuses a second change for a key.
CREATE TABLE rotations (
    iccid           text        NOT NULL,
    rotation_key    text        NOT NULL,
    request_id      text        NOT NULL,   -- the mdn.change_requested last acted on
    state           text        NOT NULL
        CHECK (state IN ('requested', 'changing', 'changed', 'failed')),
    attempts        integer     NOT NULL DEFAULT 1,
    old_number      text,
    new_number      text,
    subscription_id text,
    outcome         jsonb,                  -- the events emitted, re-emitted on redelivery
    last_error      text,
    next_retry_at   timestamptz,
    requested_at    timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (iccid, rotation_key)
);
CREATE INDEX rotations_retry ON rotations (next_retry_at) WHERE state = 'failed';
CREATE INDEX rotations_key ON rotations (rotation_key);
CREATE INDEX rotations_updated ON rotations (updated_at);
