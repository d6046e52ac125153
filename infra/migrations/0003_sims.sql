CREATE TABLE sims (
    id                       bigserial PRIMARY KEY,
    iccid                    text        NOT NULL UNIQUE,
    imei                     text,
    status                   text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'provisioning', 'active', 'suspended', 'canceled', 'error')),
    mobility_subscription_id text,
    current_number           text,
    number_status            text
        CHECK (number_status IN ('pending', 'sent', 'verified', 'failed', 'skipped')),
    reseller_id              text,
    gateway_id               text,
    port                     text,
    activated_at             timestamptz,
    last_error               text,
    rotation_status          text        NOT NULL DEFAULT 'ready'
        CHECK (rotation_status IN ('ready', 'rotating', 'success', 'failed')),
    last_rotated_at          timestamptz,
    next_rotation_due_at     timestamptz,
    rotation_count           integer     NOT NULL DEFAULT 0,
    rotation_lock_until      timestamptz,
    rotation_last_error      text,
    rotation_attempts        integer     NOT NULL DEFAULT 0,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sims_current_number ON sims (current_number);
CREATE INDEX sims_status ON sims (status);
CREATE INDEX sims_reseller ON sims (reseller_id);
CREATE INDEX sims_subscription ON sims (mobility_subscription_id);
CREATE INDEX sims_next_rotation ON sims (next_rotation_due_at) WHERE status = 'active';

-- Every number a SIM has had; the current one has no valid_to.
CREATE TABLE sim_numbers (
    id                  bigserial PRIMARY KEY,
    assignment_id       text        NOT NULL UNIQUE,
    iccid               text        NOT NULL,
    e164                text        NOT NULL,
    source              text        NOT NULL,
    valid_from          timestamptz NOT NULL,
    valid_to            timestamptz,
    verification_status text        NOT NULL DEFAULT 'pending'
        CHECK (verification_status IN ('pending', 'sent', 'verified', 'failed', 'skipped')),
    verification_code   text,
    sender_iccid        text,
    sent_at             timestamptz,
    expires_at          timestamptz,
    verified_at         timestamptz,
    failed_at           timestamptz
);
CREATE INDEX sim_numbers_iccid ON sim_numbers (iccid, valid_from DESC);
CREATE INDEX sim_numbers_e164 ON sim_numbers (e164);
CREATE INDEX sim_numbers_verification_status ON sim_numbers (verification_status);
