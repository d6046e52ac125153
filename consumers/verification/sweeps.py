"""The verification flow's clock side, run by the scheduler every ``ROTATION_VERIFICATION_SWEEP_S``
(30 s); each round is safe to run in several processes at once.

- ``expire_verifications``: verifications past their expiry (2 minutes from the send) → a
  retry through another sender (verification.requested, next attempt) while
  ``VERIFICATION_RETRIES`` and the number's ``VERIFICATION_BUDGET_S`` (from its first send)
  allow one, after that number.verification_failed (reason "timeout"); each timeout counts
  against its sender (verification.sender_suspect; ``verification_guards.py``). A verification
  expires only once the reply consumer has read every SMS the gateways pushed before its expiry
  (``reply_backlog.py``): a consumer behind its topic never fails a number that answered in
  time. Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and marked failed in the transaction
  that emits, so each failure is emitted once, across restarts and concurrent schedulers (a
  crash between emit and commit re-emits the same deterministic id: a harmless duplicate).
- ``resume_deferred``: verifications the rate limits deferred whose time has come, and
  ``resume_awaiting_sender``: those skipped for want of a sender once there is one
  (``verification_waiting.py``) → verification.requested again.

They live with the flow whose tables they change (as the finalizer's and the carrier retries'
sweeps do); the composition root runs them on the scheduler's clock.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import asyncpg
import structlog

from consumers.verification.guards import resume_deferred
from consumers.verification.reply_backlog import ReplyBacklog
from consumers.verification.rules import after_timeout, avoiding
from consumers.verification.store import Pending, expire_due
from consumers.verification.waiting import resume_awaiting_sender
from events.envelope import Event
from events.sim import (
    NumberVerificationFailed,
    VerificationRequested,
    VerificationSenderSuspect,
)
from infra.bus import Bus
from infra.clock import Clock
from infra.metrics import VERIFICATIONS
from infra.settings import Settings

PRODUCER = "simfleet/scheduler"
# how long a gateway may take to push an SMS it received: a reply received just before the
# expiry is waited for this long
PUSH_ALLOWANCE = timedelta(seconds=5)
log = structlog.get_logger("simfleet.scheduler")


class VerificationSweeps:
    def __init__(
        self, pool: asyncpg.Pool, bus: Bus, clock: Clock, settings: Settings,
        *, replies: ReplyBacklog | None = None,
    ) -> None:  # fmt: skip
        """``replies``: how far the verification reply consumer has read (None: not checked)."""
        self.pool, self.bus, self.clock, self.settings = pool, bus, clock, settings
        self.replies = replies

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
