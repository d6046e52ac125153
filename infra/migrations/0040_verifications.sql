-- Number verification: written by consumers/verification.py (codes, sends, matches) and by
-- producers/scheduler.py (timeouts). Coordination state, not a projection: replay keeps it.
--
-- One row per verification request (the number.assigned or verification.requested event id).
-- The code is fixed when the request is first handled, so a retried send repeats the same code.
-- state: sending (code reserved) → sent (verification.sent recorded: the reply may now count)
-- → online | failed; skipped (no sender); superseded (a newer verification of the SIM began).
CREATE TABLE verifications (
    request_id               text PRIMARY KEY,
    iccid                    text        NOT NULL,
    number                   text        NOT NULL,
    code                     text        NOT NULL,
    state                    text        NOT NULL
        CHECK (state IN ('sending', 'sent', 'online', 'failed', 'skipped', 'superseded')),
    correlationid            text        NOT NULL,
    mobility_subscription_id text,
    assigned_at              timestamptz,
    sender_iccid             text,
    sender_port              text,
    sent_event_id            text,
    sent_at                  timestamptz,
    expires_at               timestamptz,
    reply_message_id         text,
    verified_at              timestamptz,
    online_until             timestamptz,
    failed_at                timestamptz,
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL
);
CREATE INDEX verifications_expiring ON verifications (expires_at) WHERE state = 'sent';
CREATE INDEX verifications_code ON verifications (code);
CREATE INDEX verifications_iccid ON verifications (iccid, created_at DESC);
CREATE INDEX verifications_sender ON verifications (sender_iccid, sent_at DESC);
CREATE INDEX verifications_updated ON verifications (updated_at);

-- Every "VERIFY <code>" SMS seen on sms.inbound. A reply consumed before its verification.sent
-- waits here unmatched until that arrives; a late reply stays unmatched (kept, no effect).
CREATE TABLE verification_replies (
    message_id         text PRIMARY KEY,       -- the sms.received event id
    code               text        NOT NULL,
    number             text,
    iccid              text,
    gateway_id         text,
    port               text,
    received_at        timestamptz NOT NULL,   -- the gateway's clock
    recorded_at        timestamptz NOT NULL,   -- ours: the deadline is judged on this one
    matched_request_id text
);
CREATE INDEX verification_replies_unmatched ON verification_replies (code)
    WHERE matched_request_id IS NULL;
CREATE INDEX verification_replies_recorded ON verification_replies (recorded_at);
