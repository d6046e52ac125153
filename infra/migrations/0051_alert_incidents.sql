-- Operational alerts: one row per incident (a check's condition for one key, from when it was
-- seen until it cleared). At most one open incident per (check, key): of several schedulers,
-- one insert wins, so each incident is announced once; the *_sent_at columns make the
-- announcement and the resolve message survive a failed POST or a restart (sent next round).
CREATE TABLE alert_incidents (
    id              bigserial PRIMARY KEY,
    check_name      text        NOT NULL,
    key             text        NOT NULL,
    summary         text        NOT NULL,
    opened_at       timestamptz NOT NULL,
    resolved_at     timestamptz,
    fired_sent_at   timestamptz,
    resolve_sent_at timestamptz
);
CREATE UNIQUE INDEX alert_incidents_open ON alert_incidents (check_name, key)
    WHERE resolved_at IS NULL;
CREATE INDEX alert_incidents_unsent ON alert_incidents (id)
    WHERE fired_sent_at IS NULL OR (resolved_at IS NOT NULL AND resolve_sent_at IS NULL);
