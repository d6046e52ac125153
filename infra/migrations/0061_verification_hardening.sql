-- Verification hardening (issue #11): a timed-out verification is retried once through another
-- sender; verification SMS are rate-limited per sender SIM and per target number (deferred, not
-- dropped); senders whose SMS repeatedly go unanswered are suspect and avoided.
-- Coordination state of consumers/verification.py and producers/scheduler.py, not projections.

-- attempt: 1 for the first verification of a number, 2 for its automatic retry; the retry
-- avoids the earlier attempts' senders and gateways. state 'deferred': no sender (or the
-- number) had room under its rate limit; the scheduler asks again at deferred_until.
ALTER TABLE verifications
    ADD COLUMN attempt        integer NOT NULL DEFAULT 1,
    ADD COLUMN sender_gateway text,
    ADD COLUMN avoid_senders  text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN avoid_gateways text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN deferred_until timestamptz;
ALTER TABLE verifications DROP CONSTRAINT verifications_state_check;
ALTER TABLE verifications ADD CONSTRAINT verifications_state_check
    CHECK (state IN ('sending', 'sent', 'online', 'failed', 'skipped', 'superseded', 'deferred'));
CREATE INDEX verifications_deferred ON verifications (deferred_until) WHERE state = 'deferred';

-- Every verification SMS handed to a gateway, for the rate limits' windows. A slot is taken
-- under advisory locks on the number and the sender, so concurrent workers never exceed a limit.
CREATE TABLE verification_sends (
    request_id   text        NOT NULL,
    sender_iccid text        NOT NULL,
    number       text        NOT NULL,
    sent_at      timestamptz NOT NULL,
    PRIMARY KEY (request_id, sender_iccid)
);
CREATE INDEX verification_sends_sender ON verification_sends (sender_iccid, sent_at DESC);
CREATE INDEX verification_sends_number ON verification_sends (number, sent_at DESC);
CREATE INDEX verification_sends_sent ON verification_sends (sent_at);

-- Per sender: verification SMS unanswered in a row (timeouts since its last answered one), and
-- since when it is suspect (announced by verification.sender_suspect; cleared by an answer).
CREATE TABLE verification_senders (
    iccid            text PRIMARY KEY,
    unanswered       integer     NOT NULL DEFAULT 0,
    suspect_since    timestamptz,
    suspect_event_id text,
    updated_at       timestamptz NOT NULL
);

-- The read side: since when the SIM is a suspect sender (NULL: not suspect).
ALTER TABLE sims ADD COLUMN verification_suspect_since timestamptz;
