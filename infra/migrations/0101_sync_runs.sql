-- Number sync rounds and what they changed (consumers/number_sync.py), for the dashboard's
-- "last sync" panel. Not projections: the scheduler records a round when it asks for it, the
-- consumer each change when it emits it.
CREATE TABLE sync_runs (
    ref        text        PRIMARY KEY,   -- sync:<hour>, the requests' ref
    requested  integer     NOT NULL,      -- SIMs asked for
    started_at timestamptz NOT NULL
);
CREATE INDEX sync_runs_started ON sync_runs (started_at DESC);

CREATE TABLE sync_changes (
    event_id  text        PRIMARY KEY,    -- the event the sync emitted
    ref       text        NOT NULL,       -- the round (or operator request) that found it
    iccid     text        NOT NULL,
    change    text        NOT NULL,       -- its type: number.assigned, sim.cancelled, …
    detail    text        NOT NULL,
    found_at  timestamptz NOT NULL
);
CREATE INDEX sync_changes_ref ON sync_changes (ref, found_at DESC);
CREATE INDEX sync_changes_found ON sync_changes (found_at DESC);
