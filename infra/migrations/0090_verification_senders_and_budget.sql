-- Verification in a real fleet: a verification skipped for want of a sender waits for one
-- (awaiting_sender; asked again when a SIM comes online or the scheduler finds a sender), and
-- the automatic retries of a number share one budget counted from its first send (started_at).
-- Replies are judged by the time the gateway received them, not when they were consumed.
ALTER TABLE verifications
    ADD COLUMN awaiting_sender boolean NOT NULL DEFAULT false,
    ADD COLUMN started_at      timestamptz;
CREATE INDEX verifications_awaiting_sender ON verifications (updated_at)
    WHERE state = 'skipped' AND awaiting_sender;
CREATE INDEX verification_replies_received ON verification_replies (received_at);
