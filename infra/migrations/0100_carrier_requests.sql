-- The activation request a SIM is waiting on (queued or in flight), kept by the sims projection
-- from sim.activation_requested until its outcome: an operator's "activate" is refused while it
-- is set. And why a SIM needs an operator (sim.operator_needed), until that action succeeds.
ALTER TABLE sims
    ADD COLUMN activation_request_id   text,
    ADD COLUMN activation_requested_at timestamptz,
    ADD COLUMN operator_needed         text,
    ADD COLUMN operator_needed_action  text,
    ADD COLUMN operator_needed_since   timestamptz;
CREATE INDEX sims_operator_needed ON sims (operator_needed_since)
    WHERE operator_needed_since IS NOT NULL;

-- Carrier requests that failed retryably (consumers/carrier_retries.py), one row per SIM and
-- action: written by the provisioning handlers, resent by the scheduler with doubling waits up
-- to HX_REQUEST_MAX_ATTEMPTS, then given up (sim.operator_needed). A final outcome removes it.
-- Coordination state, not a projection: replay keeps it.
CREATE TABLE carrier_retries (
    iccid         text        NOT NULL,
    action        text        NOT NULL CHECK (action IN ('activate', 'cancel', 'suspend', 'restore')),
    request       jsonb       NOT NULL,   -- the request that failed: its copy is sent again
    request_id    text        NOT NULL,
    failures      integer     NOT NULL,   -- retryable failures in a row
    state         text        NOT NULL CHECK (state IN ('waiting', 'requested', 'operator')),
    last_error    text,
    next_retry_at timestamptz,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (iccid, action)
);
CREATE INDEX carrier_retries_due ON carrier_retries (next_retry_at) WHERE state = 'waiting';
