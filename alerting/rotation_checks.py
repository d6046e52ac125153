"""Alert checks for the daily rotation (``alerting.incidents`` runs them with the others):

- ``rotation_paused``: the carrier breaker is open (``producers/rotation_breaker.py``) — one
  message when rotation pauses, one when it resumes;
- ``rotation_incomplete``: the last reported rotation day rotated fewer SIMs than were due
  (``producers/rotation_days.py``), with its figures — resolved by a day that rotates them all.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from alerting.checks import Finding
from producers import rotation_breaker
from projections.carrier_queries import RotationDay

LAST_REPORTED = """
SELECT * FROM rotation_days WHERE reported_at IS NOT NULL ORDER BY day DESC LIMIT 1
"""


class RotationPaused:
    name = "rotation_paused"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def findings(self, now: datetime) -> list[Finding]:  # noqa: ARG002 - state, not a window
        breaker = await rotation_breaker.state(self._pool)
        if not breaker.open:
            return []
        return [Finding("fleet", f"number rotation is paused fleet-wide: {breaker.reason}")]


class RotationIncomplete:
    name = "rotation_incomplete"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def findings(self, now: datetime) -> list[Finding]:  # noqa: ARG002 - state, not a window
        row = await self._pool.fetchrow(LAST_REPORTED)
        if row is None:
            return []
        d = RotationDay.model_validate(dict(row))
        if d.rotated >= d.due:
            return []
        return [
            Finding(
                "daily",
                f"rotation of {d.day.isoformat()}: {d.rotated} of {d.due} due SIMs rotated "
                f"({d.failed} failed, {d.parked} parked, paused for {d.paused_ticks} ticks)",
            )
        ]
