-- Retention (producers/retention.py): every table that grows is cleaned on a schedule. These
-- indexes let each cleanup find its old rows without a full scan; sim_applied_events learns
-- when each id was applied (rows from before this migration count from now).
ALTER TABLE sim_applied_events ADD COLUMN applied_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX sim_applied_events_applied ON sim_applied_events (applied_at);
CREATE INDEX consumer_effects_done ON consumer_effects (done_at) WHERE outcome IS NOT NULL;
CREATE INDEX webhook_claims_finished ON webhook_claims (updated_at)
    WHERE state IN ('delivered', 'failed', 'skipped');
CREATE INDEX event_log_time ON event_log (time);
