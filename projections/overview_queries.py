"""Overview read queries (dashboard front page, ``/api/overview``): fleet counts and how far the
projections have read.

Reads ``sims``, ``inbound_sms``, ``webhook_deliveries`` and ``projection_checkpoints``; owns no
table.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from projections.read_models import SIM_STATUSES, View


class StatusCount(View):
    status: str
    sims: int


class ProjectionPosition(View):
    """How far a projection has read a topic; Kafka end offsets are not compared (see README)."""

    projection: str
    topic: str
    partitions: int
    applied: int
    updated_at: datetime


class Overview(View):
    as_of: datetime
    total_sims: int
    by_status: tuple[StatusCount, ...]
    online: int
    verification_failed: int
    verification_skipped: int = 0
    silent: int
    sms_24h: int
    delivered_24h: int
    failed_24h: int
    waiting_24h: int
    webhook_success_rate: float | None
    projections: tuple[ProjectionPosition, ...]


SIM_COUNTS = """
SELECT status, count(*) AS sims,
       count(*) FILTER (WHERE status = 'active' AND number_status = 'verified') AS online,
       count(*) FILTER (WHERE status = 'active' AND number_status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'active' AND number_status = 'skipped') AS skipped,
       count(*) FILTER (WHERE status = 'active' AND inbound_silent_since IS NOT NULL) AS silent
FROM sims GROUP BY status
"""
SILENT_SIMS = """
SELECT count(*) FROM sims WHERE status = 'active' AND inbound_silent_since IS NOT NULL
"""
SMS_SINCE = "SELECT count(*) FROM inbound_sms WHERE received_at >= $1"
DELIVERIES_SINCE = """
SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status IN ('pending', 'retrying')) AS waiting
FROM webhook_deliveries WHERE created_at >= $1
"""
PROJECTION_POSITIONS = """
SELECT projection, topic, count(*) AS partitions, sum("offset" + 1) AS applied,
       max(updated_at) AS updated_at
FROM projection_checkpoints GROUP BY projection, topic ORDER BY projection, topic
"""


async def overview(pool: asyncpg.Pool, now: datetime) -> Overview:
    day_ago = now - timedelta(hours=24)
    async with pool.acquire() as conn:
        counts = await conn.fetch(SIM_COUNTS)
        sms = await conn.fetchval(SMS_SINCE, day_ago)
        deliveries = await conn.fetchrow(DELIVERIES_SINCE, day_ago)
        positions = await conn.fetch(PROJECTION_POSITIONS)
    by_status = {r["status"]: r["sims"] for r in counts}
    delivered, failed = deliveries["delivered"], deliveries["failed"]
    return Overview(
        as_of=now,
        total_sims=sum(by_status.values()),
        by_status=tuple(StatusCount(status=s, sims=by_status.get(s, 0)) for s in SIM_STATUSES),
        online=sum(r["online"] for r in counts),
        verification_failed=sum(r["failed"] for r in counts),
        verification_skipped=sum(r["skipped"] for r in counts),
        silent=sum(r["silent"] for r in counts),
        sms_24h=sms,
        delivered_24h=delivered,
        failed_24h=failed,
        waiting_24h=deliveries["waiting"],
        webhook_success_rate=delivered / (delivered + failed) if delivered + failed else None,
        projections=tuple(ProjectionPosition.model_validate(dict(r)) for r in positions),
    )


async def silent_sim_count(pool: asyncpg.Pool) -> int:
    """Active SIMs announced silent (``sim.inbound_silent``) and not yet resumed."""
    return int(await pool.fetchval(SILENT_SIMS))
