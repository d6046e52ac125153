"""Rotation refusals in a row per SIM, and parking (``rotation_streaks``, migration 0102).

The rotation consumer calls ``count`` with each outcome it records. A refusal by the carrier
(a failure that is not ``retryable``: something about this line) adds one; a success resets
the streak and unparks the SIM. ``ROTATION_PARK_AFTER`` refusals in a row park it: the scheduler
no longer requests its daily rotation nor retries it, and ``sim.operator_needed`` (action
``rotate``) shows it to the operator, instead of it being retried daily forever. An unavailable
carrier is not the SIM's fault and is not counted: the fleet-wide breaker
(``producers/rotation_breaker.py``) handles that. An operator's "rotate now" that succeeds
unparks the SIM.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import structlog

from events.sim import MdnChangeFailed, MdnChangeRequested, SimOperatorNeeded

RESET = """
INSERT INTO rotation_streaks (iccid, refusals, last_request_id, updated_at) VALUES ($1, 0, $2, $3)
ON CONFLICT (iccid) DO UPDATE
SET refusals = 0, last_request_id = EXCLUDED.last_request_id, last_error = NULL,
    parked_at = NULL, updated_at = EXCLUDED.updated_at
"""
REFUSED = """
INSERT INTO rotation_streaks (iccid, refusals, last_request_id, last_error, updated_at)
VALUES ($1, 1, $2, $3, $4)
ON CONFLICT (iccid) DO UPDATE
SET refusals = rotation_streaks.refusals + 1, last_request_id = EXCLUDED.last_request_id,
    last_error = EXCLUDED.last_error, updated_at = EXCLUDED.updated_at
WHERE rotation_streaks.last_request_id IS DISTINCT FROM EXCLUDED.last_request_id
RETURNING refusals, parked_at
"""
PARK = "UPDATE rotation_streaks SET parked_at = $2 WHERE iccid = $1 AND parked_at IS NULL"
log = structlog.get_logger("simfleet.rotation")


async def count(
    pool: asyncpg.Pool,
    request: MdnChangeRequested,
    failure: MdnChangeFailed | None,
    *,
    park_after: int,
    now: datetime,
) -> SimOperatorNeeded | None:
    """Counts the outcome; returns the event announcing a SIM it has just parked."""
    iccid = request.data.iccid
    if failure is None:
        await pool.execute(RESET, iccid, request.id, now)
        return None
    if failure.data.retryable:
        return None
    reason = failure.data.reason
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(REFUSED, iccid, request.id, reason, now)
        if row is None or row["parked_at"] is not None or row["refusals"] < park_after:
            return None
        await conn.execute(PARK, iccid, now)
    log.warning("rotation_parked", iccid=iccid, refusals=row["refusals"], reason=reason)
    return SimOperatorNeeded.of(
        request,
        producer="simfleet/rotation",
        time=now,
        iccid=iccid,
        action="rotate",
        reason=f"rotation refused {row['refusals']} times in a row: {reason}",
        attempts=row["refusals"],
        request_id=request.id,
    )
