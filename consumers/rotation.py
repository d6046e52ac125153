"""Rotation: mdn.change_requested → Helix MDN change → mdn.changed + number.assigned
(source=rotation) | mdn.change_failed.

Reads ``sim.lifecycle`` (group ``rotation``; partitions concurrently, each SIM in order) and the
SIM's subscription id and current number from ``sims``. At most one number change per
rotation key (``rotations``, migration 0041): the day for the scheduler's daily requests and
their retries (``rotation:<date>``, ``rotation:<date>:retry-<n>``), the ref for an operator's
"rotate now". A redelivered request re-emits what it emitted; another request for a key that
already changed is refused. The current number goes to Helix with the change, so a lost answer
is checked against the details before a retry; an attempt interrupted by a crash (``changing``)
is checked the same way before changing again — the number never changes twice for one key.

The number.assigned starts the new number's verification (consumers/verification/consumer.py). A failure
is recorded with its next retry time; the scheduler asks again then (producers/scheduler.py).
Refusals in a row park the SIM for an operator (``consumers/rotation_streaks.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import asyncpg
import structlog
from faststream import Depends
from faststream.kafka import KafkaRouter

from consumers import rotation_streaks
from events import codec
from events.envelope import Event
from events.sim import MdnChanged, MdnChangeFailed, MdnChangeRequested, NumberAssigned
from events.topics import SIM_LIFECYCLE
from events.types import normalize_e164
from infra.clock import Clock
from infra.dead_letters import DeadLetterMiddleware
from infra.deps import BusDep, ClockDep, HelixDep, PoolDep, SettingsDep
from infra.helix.client import HelixClient
from infra.helix.errors import HelixError
from infra.kafka import consume, is_type
from infra.settings import Settings
from policies.rotation import Decision, RotationPolicy, decide, retry_at, rotation_key

CONSUMER = "rotation"
PRODUCER = "simfleet/rotation"
OPEN = """
INSERT INTO rotations (iccid, rotation_key, request_id, state, requested_at, updated_at)
VALUES ($1, $2, $3, 'requested', $4, $4)
ON CONFLICT (iccid, rotation_key) DO NOTHING
"""
LOCK = """
SELECT state, request_id, attempts, old_number, outcome FROM rotations
WHERE iccid = $1 AND rotation_key = $2 FOR UPDATE
"""
SIM_LINE = "SELECT mobility_subscription_id, current_number FROM sims WHERE iccid = $1"
MARK_CHANGING = """
UPDATE rotations SET state = 'changing', request_id = $3, old_number = $4, subscription_id = $5,
    updated_at = $6
WHERE iccid = $1 AND rotation_key = $2
"""
FINISH = """
UPDATE rotations SET state = $4, new_number = $5, outcome = $6, last_error = $7,
    next_retry_at = $8, updated_at = $9
WHERE iccid = $1 AND rotation_key = $2 AND request_id = $3
"""
log = structlog.get_logger("simfleet.rotation")


@dataclass(frozen=True)
class Attempt:
    """What the key's row allows this request to do, and what it needs to do it."""

    decision: Decision
    attempts: int = 1
    old_number: str | None = None
    subscription_id: str | None = None
    replay: tuple[Event, ...] = ()


class Rotator:
    """What the handler needs: the row of the request's key, the carrier, the retry policy."""

    def __init__(
        self, helix: HelixClient, pool: asyncpg.Pool, clock: Clock, settings: Settings
    ) -> None:
        self.helix, self.pool, self.clock = helix, pool, clock
        self.policy = RotationPolicy.from_settings(settings.rotation)
        self.park_after = settings.rotation.park_after

    async def begin(self, event: MdnChangeRequested, key: str) -> Attempt:
        """Opens (or finds) the key's row and decides; an acting request marks it ``changing``
        with the number it is about to change, before calling the carrier."""
        iccid, now = event.data.iccid, self.clock.now()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(OPEN, iccid, key, event.id, now)
            row = await conn.fetchrow(LOCK, iccid, key)
            outcome = tuple(codec.decode(e) for e in row["outcome"] or ())
            decision = decide(row["state"], row["request_id"], event.id, has_outcome=bool(outcome))
            if decision in ("replay", "refuse"):
                return Attempt(decision, replay=outcome)
            line = await conn.fetchrow(SIM_LINE, iccid)
            sub_id = line["mobility_subscription_id"] if line else None
            old = row["old_number"] if decision == "recover" else None
            old = old or (line["current_number"] if line else None)
            await conn.execute(MARK_CHANGING, iccid, key, event.id, old, sub_id, now)
            return Attempt(decision, row["attempts"], old, sub_id)

    async def change(self, event: MdnChangeRequested, attempt: Attempt) -> tuple[Event, ...]:
        iccid, sub_id, old = event.data.iccid, attempt.subscription_id, attempt.old_number
        if sub_id is None or old is None:
            return (failed(event, "the SIM has no subscription or no number yet", self.clock),)
        try:
            if attempt.decision == "recover":  # an interrupted attempt may have changed it
                now = await self.helix.details(sub_id, iccid=iccid, operation="mdn_change_check")
                if now.number is not None and now.number != old:
                    return changed(event, sub_id, old, now.number, self.clock)
            result = await self.helix.change_mdn(sub_id, iccid=iccid, current_number=old)
        except HelixError as err:
            log.warning("rotation_failed", iccid=iccid, reason=err.reason, retryable=err.retryable)
            return (failed(event, err.reason, self.clock, err),)
        return changed(event, sub_id, old, normalize_e164(result.new_subscriber_number), self.clock)

    async def finish(
        self, event: MdnChangeRequested, key: str, attempt: Attempt, outcome: Sequence[Event]
    ) -> tuple[Event, ...]:
        """Records the outcome before it is emitted: a crash in between re-emits, never
        re-changes. A failure gets its retry time (none once the attempts are spent). Returns
        the events to emit: the outcome, and the SIM's parking if this refusal parked it."""
        first, now = outcome[0], self.clock.now()
        new = first.data.new_number if isinstance(first, MdnChanged) else None
        error = None if new else str(getattr(first.data, "reason", ""))
        retry = None if new else retry_at(attempt.attempts, now, self.policy)
        stored = [e.model_dump(mode="json") for e in outcome]
        state = "changed" if new else "failed"
        iccid = event.data.iccid
        await self.pool.execute(FINISH, iccid, key, event.id, state, new, stored, error, retry, now)
        failure = first if isinstance(first, MdnChangeFailed) else None
        parked = await rotation_streaks.count(
            self.pool, event, failure, park_after=self.park_after, now=now
        )
        return (*outcome, parked) if parked else tuple(outcome)


async def rotator(
    helix: HelixDep, pool: PoolDep, clock: ClockDep, settings: SettingsDep
) -> Rotator:
    return Rotator(helix, pool, clock, settings)


RotatorDep = Annotated[Rotator, Depends(rotator)]


def build_router(settings: Settings) -> KafkaRouter:
    router = KafkaRouter(middlewares=(DeadLetterMiddleware,))
    lifecycle = consume(
        router, settings.kafka, SIM_LIFECYCLE, CONSUMER, max_workers=settings.helix.concurrency
    )

    @lifecycle(filter=is_type(MdnChangeRequested))
    async def on_mdn_change_requested(
        event: MdnChangeRequested, rotation: RotatorDep, bus: BusDep
    ) -> None:
        key = rotation_key(event.data.ref)
        attempt = await rotation.begin(event, key)
        if attempt.decision == "refuse":
            log.info("rotation_refused", iccid=event.data.iccid, key=key, reason="already changed")
            return
        outcome = attempt.replay or await rotation.change(event, attempt)
        if not attempt.replay:
            outcome = await rotation.finish(event, key, attempt, outcome)
        await bus.emit_many(outcome)

    @lifecycle
    async def ignore_other_types() -> None:
        """Every other sim.lifecycle event is someone else's."""

    return router


def changed(
    event: MdnChangeRequested, sub_id: str, old: str, new: str, clock: Clock
) -> tuple[Event, ...]:
    iccid, now = event.data.iccid, clock.now()
    log.info("number_rotated", iccid=iccid, old_number=old, new_number=new)
    return (
        MdnChanged.of(
            event, producer=PRODUCER, time=now, iccid=iccid, request_id=event.id,
            old_number=old, new_number=new, mobility_subscription_id=sub_id,
        ),
        NumberAssigned.of(
            event, producer=PRODUCER, time=now, iccid=iccid, request_id=event.id, number=new,
            source="rotation", mobility_subscription_id=sub_id, previous_number=old,
        ),
    )  # fmt: skip


def failed(
    event: MdnChangeRequested, reason: str, clock: Clock, err: HelixError | None = None
) -> MdnChangeFailed:
    return MdnChangeFailed.of(
        event, producer=PRODUCER, time=clock.now(), iccid=event.data.iccid, request_id=event.id,
        reason=reason, retryable=bool(err and err.retryable),
        status_code=err.status_code if err else None,
    )  # fmt: skip
