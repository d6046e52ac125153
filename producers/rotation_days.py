"""The daily run's report: per rotation day, how many SIMs were due, requested, rotated,
failed and parked, and how many ticks rotation was paused (``rotation_days``).

The scheduler's rotation tick updates the day it works on: ``requested``, ``rotated`` and
``failed`` come from that day's ``rotations`` rows, ``parked`` counts the parked SIMs, and
``due`` is all of them plus the SIMs whose slot has come but were not requested (rotation
paused) — never less than an earlier tick saw. Once the day is settled (its spread window has
passed and none of its requests is in flight or waiting for a retry, or the next day has begun)
its report is logged once (a warning when fewer rotated than were due), so a day that rotated 0
of 714 SIMs says so; the dashboard shows the last days and the alert check
``rotation_incomplete`` names a reported day that fell short.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg
import structlog

from policies.rotation import RotationPolicy, rotation_ref
from projections.carrier_queries import RotationDay, recent_days

# due: the day's requests, the SIMs whose slot came but were not requested (paused: $2) and
# the parked SIMs the day did not request
RECORD = """
INSERT INTO rotation_days (day, due, requested, rotated, failed, parked, paused_ticks, updated_at)
SELECT $1::date, r.requested + $2 + p.left_out, r.requested, r.rotated, r.failed, p.parked,
       CASE WHEN $3 THEN 1 ELSE 0 END, $4
FROM (SELECT count(*) AS requested,
             count(*) FILTER (WHERE state = 'changed') AS rotated,
             count(*) FILTER (WHERE state = 'failed') AS failed
      FROM rotations WHERE rotation_key = $5) r,
     (SELECT count(*) AS parked,
             count(*) FILTER (WHERE NOT EXISTS (
                 SELECT 1 FROM rotations x WHERE x.iccid = s.iccid AND x.rotation_key = $5
             )) AS left_out
      FROM rotation_streaks s WHERE s.parked_at IS NOT NULL) p
ON CONFLICT (day) DO UPDATE
SET due = greatest(rotation_days.due, EXCLUDED.due), requested = EXCLUDED.requested,
    rotated = EXCLUDED.rotated, failed = EXCLUDED.failed, parked = EXCLUDED.parked,
    paused_ticks = rotation_days.paused_ticks + EXCLUDED.paused_ticks,
    updated_at = EXCLUDED.updated_at
RETURNING *
"""
MARK_REPORTED = """
UPDATE rotation_days SET reported_at = $2 WHERE day = $1 AND reported_at IS NULL RETURNING *
"""
UNREPORTED = "SELECT day FROM rotation_days WHERE reported_at IS NULL AND day <= $1 ORDER BY day"
# the day's requests still under way: in flight, or failed with a retry to come
UNDER_WAY = """
SELECT count(*) FROM rotations r
WHERE r.rotation_key = $1
  AND (r.state IN ('requested', 'changing')
       OR (r.state = 'failed' AND r.next_retry_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM rotation_streaks p
                           WHERE p.iccid = r.iccid AND p.parked_at IS NOT NULL)))
"""
log = structlog.get_logger("simfleet.rotation")


def window_end(day: date, policy: RotationPolicy) -> datetime:
    """When the day's last slot has come: ``at`` plus the spread."""
    start = datetime.combine(day, policy.at.replace(tzinfo=None), tzinfo=UTC)
    return start + timedelta(seconds=policy.spread_s)


async def record(
    pool: asyncpg.Pool,
    day: date,
    *,
    unrequested: int,
    paused: bool,
    now: datetime,
    policy: RotationPolicy,
) -> RotationDay:
    """Updates the day's figures; reports the days that are settled.

    Whether the day is settled is asked before its figures are read: the other way round, a
    rotation that ended in between left the day settled with figures from before it, and its
    report said the SIM had not rotated."""
    settled = now >= window_end(day, policy) and not await pool.fetchval(
        UNDER_WAY, rotation_ref(day)
    )
    row = await pool.fetchrow(RECORD, day, unrequested, paused, now, rotation_ref(day))
    for (unreported,) in await pool.fetch(UNREPORTED, day):
        if unreported == day:
            if not settled:
                continue
        else:  # an earlier day: its figures once more, then its report
            await pool.fetchrow(RECORD, unreported, 0, False, now, rotation_ref(unreported))
        reported = await pool.fetchrow(MARK_REPORTED, unreported, now)
        if reported is not None:
            report(RotationDay.model_validate(dict(reported)))
    return RotationDay.model_validate(dict(row))


def report(d: RotationDay) -> None:
    fields = {
        "day": d.day.isoformat(), "due": d.due, "requested": d.requested,
        "rotated": d.rotated, "failed": d.failed, "parked": d.parked,
        "paused_ticks": d.paused_ticks,
    }  # fmt: skip
    if d.rotated < d.due:
        log.warning("rotation_day_report", short=d.due - d.rotated, **fields)
    else:
        log.info("rotation_day_report", **fields)


async def recent(pool: asyncpg.Pool, days: int = 7) -> list[RotationDay]:
    return await recent_days(pool, days)
