"""Scheduler: the clock → events. Three rounds of its own, each safe to run in several processes
at once; ``simfleet/sweeps.py`` lists them with every other flow's sweep and the periods the
scheduler process runs them at (``every``):

- ``request_rotations`` (every ``ROTATION_TICK_S``, 60 s): each active SIM whose daily slot has
  come (05:00 UTC plus its spread offset; ``policies/rotation.py``) → mdn.change_requested with
  ref ``rotation:<YYYY-MM-DD>``. The request is emitted in the transaction that inserts the
  (SIM, day) row of ``rotations``: of two schedulers, one insert wins, the other waits for it
  and inserts nothing. Failed rotations whose retry time has come → a new request for the
  same day (``rotation:<date>:retry-<n>``), claimed the same way. Parked SIMs are skipped;
  while the carrier breaker is open only one probe is requested; each tick records the day's
  figures (due, rotated, failed, parked) and the day's report is logged once its window passed.
- ``find_silent_sims`` (every ``SILENCE_SWEEP_S``, 5 min): online SIMs without SMS past their
  threshold → sim.inbound_silent, once per silence (``producers/silence_sweep.py``).
- ``clean_up`` (every ``ROTATION_CLEANUP_INTERVAL_S``, 1 h): ``webhook_deliveries`` rows older
  than ``WEBHOOK_RETENTION_DAYS`` (and this flow's own finished rows) deleted in small batches,
  so no long lock is held; then every other table that grows, per ``RETENTION_*``
  (``producers/retention.py``: what a retry, dedup or replay needs is kept).

A round that fails because Postgres or the broker is away is logged and tried again next round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
import structlog

from events.sim import MdnChangeRequested
from infra.bus import Bus
from infra.clock import Clock
from infra.outages import OUTAGE_TYPES
from infra.settings import Settings
from policies.rotation import RotationPolicy, current_day, due_slot, retry_ref, rotation_ref
from producers import retention, rotation_breaker, rotation_days
from producers.silence_sweep import announce_silent

PRODUCER = "simfleet/scheduler"
CLEANUP_BATCH = 500
ROTATABLE = """
SELECT s.iccid, coalesce(n.valid_from, s.last_rotated_at, s.activated_at) AS number_since
FROM sims s
LEFT JOIN LATERAL (
    SELECT valid_from FROM sim_numbers
    WHERE iccid = s.iccid AND valid_to IS NULL ORDER BY valid_from DESC LIMIT 1
) n ON true
WHERE s.status = 'active' AND s.mobility_subscription_id IS NOT NULL
  AND s.current_number IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM rotation_streaks p WHERE p.iccid = s.iccid AND p.parked_at IS NOT NULL)
"""
CLAIMED = "SELECT iccid, rotation_key FROM rotations WHERE rotation_key = ANY($1::text[])"
CLAIM_DAILY = """
INSERT INTO rotations (iccid, rotation_key, request_id, state, requested_at, updated_at)
SELECT i, k, r, 'requested', $4, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS x(i, k, r)
ON CONFLICT (iccid, rotation_key) DO NOTHING
RETURNING request_id
"""
# a day's retries stop once the next day's rotation is due anyway
CLAIM_RETRIES = """
SELECT iccid, rotation_key, attempts FROM rotations
WHERE state = 'failed' AND next_retry_at <= $1 AND rotation_key LIKE 'rotation:%'
  AND requested_at > $1 - interval '1 day'
  AND NOT EXISTS (SELECT 1 FROM rotation_streaks p
                  WHERE p.iccid = rotations.iccid AND p.parked_at IS NOT NULL)
ORDER BY next_retry_at LIMIT $2 FOR UPDATE SKIP LOCKED
"""
MARK_RETRIED = """
UPDATE rotations SET state = 'requested', attempts = attempts + 1, request_id = $3,
    next_retry_at = NULL, outcome = NULL, updated_at = $4
WHERE iccid = $1 AND rotation_key = $2
"""
DELETE_OLD = {
    "webhook_deliveries": """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
""",
    "verification_replies": """
DELETE FROM verification_replies WHERE message_id IN (
    SELECT message_id FROM verification_replies WHERE recorded_at < $1 LIMIT $2
    FOR UPDATE SKIP LOCKED)
""",
    "verifications": """
DELETE FROM verifications WHERE request_id IN (
    SELECT request_id FROM verifications
    WHERE updated_at < $1 AND state NOT IN ('sending', 'sent') LIMIT $2 FOR UPDATE SKIP LOCKED)
""",
    "verification_sends": """
DELETE FROM verification_sends WHERE (request_id, sender_iccid) IN (
    SELECT request_id, sender_iccid FROM verification_sends WHERE sent_at < $1 LIMIT $2
    FOR UPDATE SKIP LOCKED)
""",
    "rotations": """
DELETE FROM rotations WHERE (iccid, rotation_key) IN (
    SELECT iccid, rotation_key FROM rotations
    WHERE updated_at < $1 AND state IN ('changed', 'failed') LIMIT $2 FOR UPDATE SKIP LOCKED)
""",
}
log = structlog.get_logger("simfleet.scheduler")


class Scheduler:
    def __init__(self, pool: asyncpg.Pool, bus: Bus, clock: Clock, settings: Settings) -> None:
        self.pool, self.bus, self.clock, self.settings = pool, bus, clock, settings
        self.policy = RotationPolicy.from_settings(settings.rotation)

    async def every(self, interval_s: float, job: Callable[[], Awaitable[int]]) -> None:
        """Runs ``job`` now and then every ``interval_s``; a failed round waits for the next."""
        while True:
            try:
                await job()
            # Postgres or the broker away: the next round tries again; anything else is a bug
            # and ends the loop (the composition root stops the process)
            except OUTAGE_TYPES as err:
                log.warning("scheduler_round_failed", job=job.__name__, error=repr(err))
            await asyncio.sleep(interval_s)

    async def find_silent_sims(self) -> int:
        """Online SIMs quiet past their threshold, announced once each; returns how many."""
        silent = await announce_silent(self.pool, self.bus, self.clock.now(), self.settings.silence)
        return len(silent)

    async def request_rotations(self) -> int:
        """Due daily rotations and due retries; returns how many requests were emitted.

        Parked SIMs are left out; while the breaker is open (``producers/rotation_breaker``)
        one due SIM is requested as a probe and retries wait. The day's figures are recorded
        (``producers/rotation_days``)."""
        now = self.clock.now()
        paused = await rotation_breaker.paused(self.pool, now, self.settings.rotation)
        due = {}
        for row in await self.pool.fetch(ROTATABLE):
            found = due_slot(row["iccid"], row["number_since"], now, self.policy)
            if found is not None:
                due[(row["iccid"], found.ref)] = self._request(row["iccid"], found.ref, now)
        claimed = await self.pool.fetch(CLAIMED, sorted({key for _, key in due}))
        for row in claimed:
            due.pop((row["iccid"], row["rotation_key"]), None)  # most of them, after the first tick
        # one order for every scheduler: concurrent claims wait for each other, never deadlock
        ordered = sorted(due.items(), key=lambda item: item[0])
        if paused:
            ordered = ordered[: rotation_breaker.PROBES_WHILE_OPEN]
        daily = await self._claim_daily(ordered, now)
        # while paused, a due retry is the probe when no daily rotation was
        probes = rotation_breaker.PROBES_WHILE_OPEN - daily
        requested = daily + await self._retry(now, probes if paused else CLEANUP_BATCH)
        if requested:
            log.info("rotations_requested", count=requested, paused=paused)
        today = current_day(now, self.policy)
        waiting = sum(ref == rotation_ref(today) for _, ref in due) - daily
        await rotation_days.record(
            self.pool, today, unrequested=max(waiting, 0), paused=paused, now=now,
            policy=self.policy,
        )  # fmt: skip
        return requested

    async def _claim_daily(
        self, due: list[tuple[tuple[str, str], MdnChangeRequested]], now: datetime
    ) -> int:
        emitted = 0
        for start in range(0, len(due), CLEANUP_BATCH):
            chunk = due[start : start + CLEANUP_BATCH]
            async with self.pool.acquire() as conn, conn.transaction():
                won = await conn.fetch(
                    CLAIM_DAILY,
                    [iccid for (iccid, _), _ in chunk],
                    [key for (_, key), _ in chunk],
                    [event.id for _, event in chunk],
                    now,
                )
                ours = {r["request_id"] for r in won}
                await self.bus.emit_many([e for _, e in chunk if e.id in ours])
            emitted += len(ours)
        return emitted

    async def _retry(self, now: datetime, limit: int) -> int:
        if limit <= 0:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(CLAIM_RETRIES, now, limit)
            events = [
                self._request(r["iccid"], retry_ref(r["rotation_key"], r["attempts"] + 1), now)
                for r in rows
            ]
            for row, event in zip(rows, events, strict=True):
                await conn.execute(MARK_RETRIED, row["iccid"], row["rotation_key"], event.id, now)
            await self.bus.emit_many(events)
        return len(events)

    def _request(self, iccid: str, ref: str, now: datetime) -> MdnChangeRequested:
        return MdnChangeRequested.create(producer=PRODUCER, time=now, iccid=iccid, ref=ref)

    async def clean_up(self) -> int:
        """Rows past retention, table by table, in batches; returns how many were deleted."""
        cutoff = self.clock.now() - timedelta(days=self.settings.webhooks.retention_days)
        deleted = 0
        for table, sql in DELETE_OLD.items():
            while True:
                status = await self.pool.execute(sql, cutoff, CLEANUP_BATCH)
                count = int(status.split()[-1])
                deleted += count
                if count < CLEANUP_BATCH:
                    break
                await asyncio.sleep(0)  # let other work in between batches
            log.debug("retention_cleanup", table=table, cutoff=cutoff.isoformat())
        deleted += sum((await retention.clean_up(self.pool, self.clock, self.settings)).values())
        if deleted:
            log.info("retention_cleanup_done", deleted=deleted)
        return deleted
