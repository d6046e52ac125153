-- Rotation that survives a bad day (consumers/rotation_streaks.py, producers/rotation_breaker.py,
-- producers/rotation_days.py). Coordination state, not projections: replay keeps them.

-- Per SIM: rotations the carrier refused in a row; ROTATION_PARK_AFTER of them park the SIM (no
-- daily rotation, no retries) until a rotation of it succeeds.
CREATE TABLE rotation_streaks (
    iccid           text        PRIMARY KEY,
    refusals        integer     NOT NULL DEFAULT 0,
    last_request_id text,                   -- the request last counted: a redelivery counts once
    last_error      text,
    parked_at       timestamptz,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX rotation_streaks_parked ON rotation_streaks (iccid) WHERE parked_at IS NOT NULL;

-- The fleet-wide circuit breaker: open = rotation paused (the carrier's error rate crossed
-- ROTATION_BREAKER_ERROR_RATE); closed again once its calls succeed.
CREATE TABLE rotation_breaker (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    open       boolean     NOT NULL,
    changed_at timestamptz NOT NULL,
    reason     text        NOT NULL
);

-- One row per rotation day: SIMs due, requested, rotated, failed, parked; ticks it was paused.
CREATE TABLE rotation_days (
    day          date        PRIMARY KEY,
    due          integer     NOT NULL,
    requested    integer     NOT NULL,
    rotated      integer     NOT NULL,
    failed       integer     NOT NULL,
    parked       integer     NOT NULL,
    paused_ticks integer     NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL,
    reported_at  timestamptz                 -- when the day's report was logged
);
