CREATE TABLE resellers (
    id         text PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE reseller_sims (
    iccid       text PRIMARY KEY,
    reseller_id text        NOT NULL REFERENCES resellers (id),
    assigned_at timestamptz NOT NULL
);
CREATE INDEX reseller_sims_reseller ON reseller_sims (reseller_id);

CREATE TABLE reseller_webhooks (
    endpoint_id            text PRIMARY KEY,
    reseller_id            text        NOT NULL REFERENCES resellers (id),
    url                    text        NOT NULL,
    sealed_secret          text        NOT NULL,
    previous_sealed_secret text,
    event_types            text[]      NOT NULL DEFAULT '{}',
    enabled                boolean     NOT NULL DEFAULT true,
    health                 text        NOT NULL DEFAULT 'healthy'
        CHECK (health IN ('healthy', 'failing', 'disabled')),
    disabled_reason        text,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reseller_webhooks_reseller ON reseller_webhooks (reseller_id);
