-- The sim.activated event a SIM's number is waiting for: the finalizer sweep answers it with
-- the same number.assigned id the finalizer itself would have emitted.
ALTER TABLE sims ADD COLUMN activation_id text;
CREATE INDEX sims_unfinalized ON sims (activated_at)
    WHERE status = 'provisioning' AND current_number IS NULL;

-- sim.lifecycle events the sims projection has applied: a re-published event (a re-imported
-- sheet, an outcome re-emitted from the effects ledger) arrives at a later offset and must not
-- move a SIM back to an older state.
CREATE TABLE sim_applied_events (
    event_id text PRIMARY KEY
);
