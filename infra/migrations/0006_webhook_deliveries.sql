CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    message_id       text        NOT NULL,
    endpoint         text        NOT NULL,
    reseller_id      text        NOT NULL,
    event_type       text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'retrying', 'delivered', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    last_latency_ms  double precision,
    next_attempt_at  timestamptz,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, endpoint)
);
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, updated_at DESC);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint, created_at DESC);
