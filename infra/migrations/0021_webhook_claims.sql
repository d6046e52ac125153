-- Coordination state of the webhook consumer (not a projection: never rebuilt by replay).
-- One row per (message, endpoint): the durable outbox of a delivery and its lease. Inserted
-- before the source offset is committed; a redelivered source event finds the row and sends
-- nothing, so a (message, endpoint) pair is delivered once per sequence (a resend starts the
-- next sequence).
CREATE TABLE webhook_claims (
    message_id    text        NOT NULL,
    endpoint_id   text        NOT NULL,
    reseller_id   text        NOT NULL,
    event_type    text        NOT NULL,
    correlationid text        NOT NULL,
    body          text        NOT NULL,
    state         text        NOT NULL
        CHECK (state IN ('pending', 'scheduled', 'delivered', 'failed')),
    sequence      integer     NOT NULL DEFAULT 0,
    attempts      integer     NOT NULL DEFAULT 0,
    tries         integer     NOT NULL DEFAULT 0,
    owner         text,
    lease_until   timestamptz NOT NULL,
    due_at        timestamptz,
    started_at    timestamptz NOT NULL,
    delivered_at  timestamptz,
    resend_ref    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, endpoint_id)
);
-- the sweeper's scan: unfinished deliveries whose owner went quiet
CREATE INDEX webhook_claims_open ON webhook_claims (lease_until) WHERE state IN ('pending', 'scheduled');
CREATE INDEX webhook_claims_endpoint ON webhook_claims (endpoint_id, created_at);
CREATE INDEX webhook_claims_reseller ON webhook_claims (reseller_id, created_at);
