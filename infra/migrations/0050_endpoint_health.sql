-- Endpoint health. endpoint_health is the health consumer's own state (not a projection): per
-- endpoint the failure streak since the last success, and the last offsets it applied (an
-- endpoint's delivery events share one partition of webhook.deliveries, its registry events one
-- of reseller.registry), so a redelivered batch changes nothing. The read side is the health
-- column of reseller_webhooks, projected from the webhook.endpoint_* events.
CREATE TABLE endpoint_health (
    endpoint_id      text PRIMARY KEY,
    reseller_id      text        NOT NULL,
    state            text        NOT NULL DEFAULT 'healthy'
        CHECK (state IN ('healthy', 'failing', 'disabled')),
    failures         integer     NOT NULL DEFAULT 0,
    failing_since    timestamptz,
    last_failure_at  timestamptz,
    last_success_at  timestamptz,
    last_error       text,
    last_status_code integer,
    last_message_id  text,
    delivery_offset  bigint      NOT NULL DEFAULT -1,
    registry_offset  bigint      NOT NULL DEFAULT -1,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX endpoint_health_failing ON endpoint_health (failing_since) WHERE state = 'failing';

ALTER TABLE reseller_webhooks ADD COLUMN failing_since timestamptz;
ALTER TABLE reseller_webhooks ADD COLUMN health_error text;

-- A delivery for a disabled endpoint is kept, unattempted, so re-enabling can send it.
ALTER TABLE webhook_claims DROP CONSTRAINT webhook_claims_state_check;
ALTER TABLE webhook_claims ADD CONSTRAINT webhook_claims_state_check
    CHECK (state IN ('pending', 'scheduled', 'delivered', 'failed', 'skipped'));
CREATE INDEX webhook_claims_missed ON webhook_claims (endpoint_id, created_at)
    WHERE state IN ('failed', 'skipped');
