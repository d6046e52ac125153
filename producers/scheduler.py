"""Scheduler: the clock → events. Five loops, each safe to run in several processes at once:

- every ``ROTATION_VERIFICATION_SWEEP_S`` (30 s): verifications past their expiry (2 minutes
  from the send) → a retry through another sender (verification.requested, next attempt) while
  ``VERIFICATION_RETRIES`` and the number's ``VERIFICATION_BUDGET_S`` (from its first send) allow
  one, after that number.verification_failed (reason "timeout"); each timeout counts against
  its sender (verification.sender_suspect; ``consumers/verification_guards.py``). A verification
  expires only once the reply consumer has read every SMS the gateways pushed before its expiry
  (``consumers/reply_backlog.py``): a consumer behind its topic never fails a number that
  answered in time. Verifications deferred by the rate limits whose time has come, and those
  skipped for want of a sender once there is one (``consumers/verification_waiting.py``) →
  verification.requested again. Rows are claimed with ``FOR UPDATE SKIP
  LOCKED`` and marked failed in the transaction that emits, so each failure is emitted once,
  across restarts and concurrent schedulers (a crash between emit and commit re-emits the
  same deterministic id: a harmless duplicate).
- every ``ROTATION_TICK_S`` (60 s): each active SIM whose daily slot has come (05:00 UTC plus
  its spread offset; ``policies/rotation.py``) → mdn.change_requested with ref
  ``rotation:<YYYY-MM-DD>``. The request is emitted in the transaction that inserts the
  (SIM, day) row of ``rotations``: of two schedulers, one insert wins, the other waits for it
  and inserts nothing. Failed rotations whose retry time has come → a new request for the
  same day (``rotation:<date>:retry-<n>``), claimed the same way. Parked SIMs are skipped;
  while the carrier breaker is open only one probe is requested; each tick records the day's
  figures (due, rotated, failed, parked) and the day's report is logged once its window passed.
- every ``SILENCE_SWEEP_S`` (5 min): online SIMs without SMS past their threshold →
  sim.inbound_silent, once per silence (``producers/silence_sweep.py``).
- every ``ROTATION_CLEANUP_INTERVAL_S`` (1 h): ``webhook_deliveries`` rows older than
  ``WEBHOOK_RETENTION_DAYS`` (and this flow's own finished rows) deleted in small batches, so
  no long lock is held; then every other table that grows, per ``RETENTION_*``
  (``producers/retention.py``: what a retry, dedup or replay needs is kept).

A round that fails because Postgres or the broker is away is logged and tried again next round.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
import structlog

from consumers.reply_backlog import ReplyBacklog
from consumers.verification_guards import resume_deferred
from consumers.verification_rules import after_timeout, avoiding
from consumers.verification_store import Pending, expire_due
from consumers.verification_waiting import resume_awaiting_sender
from events.envelope import Event
from events.sim import (
    MdnChangeRequested,
    NumberVerificationFailed,
    VerificationRequested,
    VerificationSenderSuspect,
)
from infra.clock import Clock
from infra.kafka import Bus
from infra.metrics import VERIFICATIONS
from infra.outages import OUTAGE_TYPES
from infra.settings import Settings
from policies.rotation import RotationPolicy, current_day, due_slot, retry_ref, rotation_ref
from producers import retention, rotation_breaker, rotation_days
from producers.silence_sweep import announce_silent

PRODUCER = "simfleet/scheduler"
# how long a gateway may take to push an SMS it received: a reply received just before the
# expiry is waited for this long
PUSH_ALLOWANCE = timedelta(seconds=5)
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
    def __init__(
        self, pool: asyncpg.Pool, bus: Bus, clock: Clock, settings: Settings,
        *, replies: ReplyBacklog | None = None,
    ) -> None:  # fmt: skip
        """``replies``: how far the verification reply consumer has read (None: not checked)."""
        self.pool, self.bus, self.clock, self.settings = pool, bus, clock, settings
        self.replies = replies
        self.policy = RotationPolicy.from_settings(settings.rotation)

    async def run(self) -> None:
        """Every loop until cancelled (the composition root owns the task)."""
        r = self.settings.rotation
        async with asyncio.TaskGroup() as loops:
            loops.create_task(self.every(r.verification_sweep_s, self.expire_verifications))
            loops.create_task(self.every(r.verification_sweep_s, self.resume_deferred))
            loops.create_task(self.every(r.verification_sweep_s, self.resume_awaiting_sender))
            loops.create_task(self.every(r.tick_s, self.request_rotations))
            loops.create_task(self.every(self.settings.silence.sweep_s, self.find_silent_sims))
            loops.create_task(self.every(r.cleanup_interval_s, self.clean_up))

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

    async def expire_verifications(self) -> int:
        """Timed-out verifications retried or failed; returns how many timed out."""
        now = cutoff = self.clock.now()
        if self.replies is not None:
            unread = await self.replies.oldest_unread()
            if unread is None:
                log.warning("verification_expiry_postponed", reason="reply backlog not measured")
                return 0
            cutoff = min(now, unread.since or now) - PUSH_ALLOWANCE
        ended = await expire_due(
            self.pool, self.bus, now, self._timed_out, expired_before=cutoff,
            suspect_after=self.settings.verification.suspect_after, producer=PRODUCER,
        )  # fmt: skip
        kinds = Counter(e.type for e in ended)
        failed = kinds[NumberVerificationFailed.event_type()]
        retried = kinds[VerificationRequested.event_type()]
        suspects = kinds[VerificationSenderSuspect.event_type()]
        VERIFICATIONS.labels("failed").inc(failed)
        VERIFICATIONS.labels("retried").inc(retried)
        if ended:
            log.info("verifications_timed_out", failed=failed, retried=retried, suspects=suspects)
        return failed + retried

    def _timed_out(self, p: Pending) -> tuple[Event, datetime | None]:
        """Another sender (and gateway) tries again while the retries and the number's budget
        allow; after that the number has failed."""
        now = self.clock.now()
        v, expiry_s = self.settings.verification, self.settings.rotation.verification_expiry_s
        started = p.started_at or p.sent_at or now
        if after_timeout(p.attempt, v.retries, started, now, expiry_s, v.budget_s) == "retry":
            retry = VerificationRequested.create(
                producer=PRODUCER, time=now, correlationid=p.correlationid, iccid=p.iccid,
                ref=f"retry:{p.sent_event_id}", number=p.number, attempt=p.attempt + 1,
                avoid_senders=avoiding(p.avoid_senders, p.sender_iccid),
                avoid_gateways=avoiding(p.avoid_gateways, p.sender_gateway), reason="timeout",
                started_at=started,
            )  # fmt: skip
            return retry, None
        event = NumberVerificationFailed.create(
            producer=PRODUCER, time=now, correlationid=p.correlationid,
            iccid=p.iccid, request_id=p.sent_event_id, number=p.number,
            mobility_subscription_id=p.mobility_subscription_id, reason="timeout",
        )  # fmt: skip
        return event, None

    async def resume_deferred(self) -> int:
        """Verifications the rate limits deferred, asked for again once a slot is free."""
        asked = await resume_deferred(self.pool, self.bus, self.clock.now(), PRODUCER)
        if asked:
            log.info("deferred_verifications_resumed", count=len(asked))
        return len(asked)

    async def resume_awaiting_sender(self) -> int:
        """Verifications skipped for want of a sender, asked again once a new one exists."""
        asked = await resume_awaiting_sender(self.pool, self.bus, self.clock.now(), PRODUCER)
        if asked:
            log.info("verifications_resumed_with_a_sender", count=len(asked))
        return len(asked)

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
