"""Carrier read queries (dashboard ``/carrier``, ``GET /api/carrier``): when number sync last ran
and what it changed, the SIMs waiting for an operator, the daily rotation's figures and whether
rotation is paused.

Reads ``sync_runs``, ``sync_changes``, ``sims``, ``rotation_days``, ``rotation_streaks`` and
``rotation_breaker``; owns no table.
"""

from __future__ import annotations

from datetime import date, datetime

import asyncpg

from projections.read_models import View

LAST_RUN = "SELECT ref, requested, started_at FROM sync_runs ORDER BY started_at DESC LIMIT 1"
RUN_CHANGES = """
SELECT change, count(*) AS n FROM sync_changes WHERE ref = $1 GROUP BY change ORDER BY change
"""
RECENT_CHANGES = """
SELECT ref, iccid, change, detail, found_at FROM sync_changes ORDER BY found_at DESC LIMIT $1
"""
NEEDING_OPERATOR = """
SELECT iccid, operator_needed_action AS action, operator_needed AS reason,
       operator_needed_since AS since
FROM sims WHERE operator_needed_since IS NOT NULL
ORDER BY operator_needed_since DESC LIMIT $1
"""
RECENT_DAYS = "SELECT * FROM rotation_days ORDER BY day DESC LIMIT $1"
BREAKER = "SELECT open, changed_at, reason FROM rotation_breaker WHERE id"
PARKED = "SELECT count(*) FROM rotation_streaks WHERE parked_at IS NOT NULL"


class ChangeCount(View):
    change: str
    n: int


class SyncRun(View):
    ref: str
    requested: int
    started_at: datetime
    changes: tuple[ChangeCount, ...]


class SyncChange(View):
    ref: str
    iccid: str
    change: str
    detail: str
    found_at: datetime


class OperatorNeeded(View):
    iccid: str
    action: str | None
    reason: str | None
    since: datetime


class RotationDay(View):
    day: date
    due: int
    requested: int
    rotated: int
    failed: int
    parked: int
    paused_ticks: int
    updated_at: datetime
    reported_at: datetime | None


class Breaker(View):
    open: bool
    changed_at: datetime | None
    reason: str


class CarrierStatus(View):
    last_sync: SyncRun | None
    sync_changes: tuple[SyncChange, ...]
    operator_needed: tuple[OperatorNeeded, ...]
    rotation_days: tuple[RotationDay, ...]
    rotation: Breaker
    parked: int


async def last_sync(conn: asyncpg.Connection | asyncpg.Pool) -> SyncRun | None:
    run = await conn.fetchrow(LAST_RUN)
    if run is None:
        return None
    counts = await conn.fetch(RUN_CHANGES, run["ref"])
    return SyncRun(
        ref=run["ref"],
        requested=run["requested"],
        started_at=run["started_at"],
        changes=tuple(ChangeCount.model_validate(dict(c)) for c in counts),
    )


async def recent_days(conn: asyncpg.Connection | asyncpg.Pool, days: int = 7) -> list[RotationDay]:
    return [RotationDay.model_validate(dict(r)) for r in await conn.fetch(RECENT_DAYS, days)]


async def carrier_status(pool: asyncpg.Pool, *, changes: int = 50) -> CarrierStatus:
    async with pool.acquire() as conn:
        run = await last_sync(conn)
        recent = await conn.fetch(RECENT_CHANGES, changes)
        needing = await conn.fetch(NEEDING_OPERATOR, 500)
        days = await recent_days(conn)
        breaker = await conn.fetchrow(BREAKER)
        parked = await conn.fetchval(PARKED)
    return CarrierStatus(
        last_sync=run,
        sync_changes=tuple(SyncChange.model_validate(dict(r)) for r in recent),
        operator_needed=tuple(OperatorNeeded.model_validate(dict(r)) for r in needing),
        rotation_days=tuple(days),
        rotation=Breaker.model_validate(dict(breaker))
        if breaker
        else Breaker(open=False, changed_at=None, reason="never paused"),
        parked=parked,
    )
