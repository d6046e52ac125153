-- One spelling of "cancelled" across SIM statuses and event types: the event is sim.cancelled,
-- so the status it leaves is 'cancelled' too (the carrier's own "CANCELED" stays in its answers).
ALTER TABLE sims DROP CONSTRAINT sims_status_check;
UPDATE sims SET status = 'cancelled' WHERE status = 'canceled';
ALTER TABLE sims ADD CONSTRAINT sims_status_check
    CHECK (status IN ('pending', 'provisioning', 'active', 'suspended', 'cancelled', 'error'));
