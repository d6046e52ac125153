"""The rotation circuit breaker: when the carrier fails too many calls, rotation pauses
fleet-wide, and it resumes by itself once calls succeed again (``rotation_breaker``).

Read from ``helix_api_logs`` (every Helix call, projected from ``helix.called``) by the
scheduler's rotation tick:

- closed → open when, over the last ``ROTATION_BREAKER_WINDOW_S`` (but not before it last
  closed), at least ``ROTATION_BREAKER_MIN_CALLS`` calls were made and the failed share
  reached ``ROTATION_BREAKER_ERROR_RATE``;
- open → closed when the last ``ROTATION_BREAKER_CLOSE_AFTER`` calls since it opened all
  succeeded. While open, each tick still requests one due rotation (a probe), so that calls
  are made even when rotation was the only traffic.

One row, changed under its lock: several schedulers agree on the state and log each change
once. The alert check ``rotation_paused`` (``alerting.checks``) announces the pause and
its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import structlog

from infra.settings import RotationSettings

PROBES_WHILE_OPEN = 1
LOCK = "SELECT open, changed_at, reason FROM rotation_breaker WHERE id FOR UPDATE"
ENSURE = """
INSERT INTO rotation_breaker (id, open, changed_at, reason) VALUES (true, false, $1, 'start')
ON CONFLICT (id) DO NOTHING
"""
SET_STATE = "UPDATE rotation_breaker SET open = $1, changed_at = $2, reason = $3 WHERE id"
WINDOW = """
SELECT count(*) FILTER (WHERE NOT ok) AS failed, count(*) AS total FROM helix_api_logs
WHERE called_at > $1 AND called_at <= $2 AND operation <> 'token'
"""
LATEST = """
SELECT ok FROM helix_api_logs WHERE called_at > $1 AND operation <> 'token'
ORDER BY called_at DESC LIMIT $2
"""
STATE = "SELECT open, changed_at, reason FROM rotation_breaker WHERE id"
log = structlog.get_logger("simfleet.rotation")


@dataclass(frozen=True)
class BreakerState:
    open: bool
    changed_at: datetime | None
    reason: str


async def state(pool: asyncpg.Pool) -> BreakerState:
    row = await pool.fetchrow(STATE)
    if row is None:
        return BreakerState(False, None, "never opened")
    return BreakerState(row["open"], row["changed_at"], row["reason"])


async def paused(pool: asyncpg.Pool, now: datetime, s: RotationSettings) -> bool:
    """Whether rotation is paused now; opens or closes the breaker as the calls say."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(ENSURE, now)
        row = await conn.fetchrow(LOCK)
        if row["open"]:
            latest = await conn.fetch(LATEST, row["changed_at"], s.breaker_close_after)
            if len(latest) < s.breaker_close_after or not all(r["ok"] for r in latest):
                return True
            reason = f"the last {len(latest)} carrier calls succeeded"
            await conn.execute(SET_STATE, False, now, reason)
            log.warning("rotation_resumed", reason=reason)
            return False
        # calls before it last closed were judged already: a fresh window starts then
        since = max(now - timedelta(seconds=s.breaker_window_s), row["changed_at"])
        calls = await conn.fetchrow(WINDOW, since, now)
        failed, total = calls["failed"], calls["total"]
        if total < s.breaker_min_calls or failed / total < s.breaker_error_rate:
            return False
        reason = (
            f"{failed} of {total} carrier calls failed in the last {s.breaker_window_s:g}s "
            f"(threshold {s.breaker_error_rate:.0%})"
        )
        await conn.execute(SET_STATE, True, now, reason)
        log.warning("rotation_paused", reason=reason)
        return True
