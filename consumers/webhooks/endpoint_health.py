"""Endpoint health: delivery outcomes → ``healthy`` / ``failing`` / ``disabled`` per endpoint.

Reads ``webhook.deliveries`` (delivery_succeeded/failed) and ``reseller.registry`` (endpoint
added/removed/disabled/enabled) in batches → folds them into ``endpoint_health`` (its rows:
``endpoint_health_rows``) with the pure rules of ``endpoint_health_rules`` → emits
``webhook.endpoint_failing``, ``webhook.endpoint_recovered``, ``webhook.endpoint_disabled``
(failing for ``disable_after``).
The resellers projection shows them in ``reseller_webhooks.health``.

One transaction per batch: lock the endpoints' rows, apply the records past each row's last
applied offset, write, emit, commit. A crash before the commit re-applies the batch and
re-emits the same deterministic ids (harmless duplicates); after it, the offsets skip them.
Decisions use the attempts' own times; ``disable_overdue`` is the clock's turn (scheduler), for
an endpoint whose failures stopped arriving.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, assert_never, cast

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter

from consumers.webhooks.endpoint_health_rows import (
    Row,
    claim_overdue,
    lock_rows,
    mark_disabled,
    save_rows,
)
from consumers.webhooks.endpoint_health_rules import (
    Health,
    HealthPolicy,
    Transition,
    after_failure,
    after_success,
    disabled,
    overdue,
    reset,
)
from events.envelope import Event
from events.reseller import (
    WebhookEndpointAdded,
    WebhookEndpointDisabled,
    WebhookEndpointEnabled,
    WebhookEndpointFailing,
    WebhookEndpointRecovered,
    WebhookEndpointRemoved,
)
from events.topics import RESELLER_REGISTRY, WEBHOOK_DELIVERIES, event_classes
from events.webhook import WebhookDeliveryFailed, WebhookDeliverySucceeded
from infra.bus import Bus
from infra.clock import Clock
from infra.context import LoopContext, MessageDep
from infra.dead_letters import DeadLetters, apply_isolating, decode_wanted, observe_batch
from infra.kafka import GATHER_BYTES, consume_batches
from infra.settings import Settings

PRODUCER = "simfleet/endpoint-health"
EndpointEvent = (
    WebhookDeliverySucceeded
    | WebhookDeliveryFailed
    | WebhookEndpointAdded
    | WebhookEndpointRemoved
    | WebhookEndpointDisabled
    | WebhookEndpointEnabled
)
WANTED = frozenset(cls.event_type() for cls in event_classes(EndpointEvent))  # named once
log = structlog.get_logger("simfleet.endpoint_health")


@dataclass(frozen=True)
class HealthTracker:
    """What the handler needs; in FastStream's context as ``endpoint_health``."""

    pool: asyncpg.Pool
    bus: Bus
    clock: Clock
    policy: HealthPolicy
    dead_letters: DeadLetters


HealthDep = Annotated[HealthTracker, LoopContext("endpoint_health")]


def build_router(settings: Settings, *, group: str = "endpoint_health") -> KafkaRouter:
    kafka = settings.kafka
    router = KafkaRouter()
    # a failing streak is judged over minutes: batches as large as half a second brings
    subscriber = consume_batches(
        router, kafka, (WEBHOOK_DELIVERIES, RESELLER_REGISTRY), group, gather_bytes=GATHER_BYTES
    )
    subscriber(track_health)
    return router


@dataclass(frozen=True)
class Positioned:
    event: EndpointEvent
    topic: str
    offset: int


async def track_health(msg: MessageDep, endpoint_health: HealthDep) -> None:
    records = cast(tuple[ConsumerRecord[Any, Any], ...], msg.raw_message)
    items = await _decoded(records, endpoint_health.dead_letters)

    async def apply_events(events: list[Positioned]) -> None:
        await apply(endpoint_health, events)

    await apply_isolating(items, apply_events, endpoint_health.dead_letters)
    observe_batch(msg, records)


async def _decoded(
    records: Sequence[ConsumerRecord[Any, Any]], dead: DeadLetters
) -> list[tuple[ConsumerRecord[Any, Any], Positioned]]:
    return [
        (
            record,
            Positioned(
                event,
                "delivery" if record.topic.endswith(WEBHOOK_DELIVERIES.name) else "registry",
                record.offset,
            ),
        )
        for record, event in await decode_wanted(records, WANTED, dead)
        if isinstance(event, EndpointEvent)
    ]


async def apply(tracker: HealthTracker, events: Sequence[Positioned]) -> None:
    if not events:
        return
    owners = {_endpoint_of(p.event): _reseller_of(p.event) for p in events}
    emitted: list[Event] = []
    async with tracker.pool.acquire() as conn, conn.transaction():
        rows = await lock_rows(conn, owners)
        for p in events:
            emitted += _fold(tracker, rows, p)
        await save_rows(conn, rows)
        if emitted:
            await tracker.bus.emit_many(emitted)  # before the commit: at worst a duplicate id
    for event in emitted:
        log.warning("webhook_endpoint_health", event_type=event.type, subject=event.subject,
                    endpoint_id=getattr(event.data, "endpoint_id", None))  # fmt: skip


def _fold(tracker: HealthTracker, rows: dict[str, Row], p: Positioned) -> list[Event]:
    endpoint_id, reseller_id = _endpoint_of(p.event), _reseller_of(p.event)
    row = rows.get(endpoint_id)
    if row is None or row.removed:
        row = rows[endpoint_id] = Row(Health(endpoint_id, reseller_id))
    applied = row.delivery_offset if p.topic == "delivery" else row.registry_offset
    if p.offset <= applied:
        return []  # redelivered: already in the row
    if p.topic == "delivery":
        row.delivery_offset = p.offset
    else:
        row.registry_offset = p.offset
    transitions: list[Transition] = []
    before = row.health
    match p.event:
        case WebhookDeliverySucceeded(data=d):
            row.health, transitions = after_success(row.health, d.message_id, d.attempted_at)
        case WebhookDeliveryFailed(data=d):
            row.health, transitions = after_failure(
                row.health, d.message_id, d.attempted_at, error=d.error,
                status_code=d.status_code, policy=tracker.policy,
            )  # fmt: skip
        case WebhookEndpointAdded() | WebhookEndpointEnabled():
            row.health = reset(Health(endpoint_id, reseller_id))
        case WebhookEndpointDisabled():
            row.health = disabled(row.health)
        case WebhookEndpointRemoved():
            row.removed = True
        case _:
            assert_never(p.event)
    return [_announce(tracker, t, before, row.health, p.event) for t in transitions]


def _endpoint_of(event: EndpointEvent) -> str:
    return event.data.endpoint_id


def _reseller_of(event: EndpointEvent) -> str:
    return event.data.reseller_id


def _announce(
    tracker: HealthTracker, transition: Transition, before: Health, after: Health, cause: Event
) -> Event:
    now = tracker.clock.now()
    common = {"reseller_id": after.reseller_id, "endpoint_id": after.endpoint_id}
    match transition:
        case Transition.FAILING:
            return WebhookEndpointFailing.of(
                cause, producer=PRODUCER, time=now, **common, since=after.failing_since or now,
                failures=after.failures, last_error=after.last_error,
                last_status_code=after.last_status_code,
            )  # fmt: skip
        case Transition.RECOVERED:
            return WebhookEndpointRecovered.of(
                cause, producer=PRODUCER, time=now, **common,
                failing_since=before.failing_since or now, message_id=after.last_message_id or "",
            )  # fmt: skip
        case Transition.DISABLED:
            return disabled_event(tracker, after, cause.correlationid)


def disabled_event(tracker: HealthTracker, health: Health, correlationid: str) -> Event:
    days = tracker.policy.disable_after.total_seconds() / 86400
    return WebhookEndpointDisabled.create(
        producer=PRODUCER,
        time=tracker.clock.now(),
        correlationid=correlationid,
        reseller_id=health.reseller_id,
        endpoint_id=health.endpoint_id,
        reason=f"every delivery failed for {days:g} days",
        message_id=health.last_message_id,
        status_code=health.last_status_code,
        failing_since=health.failing_since,
    )


async def disable_overdue(tracker: HealthTracker) -> int:
    """The clock's part: endpoints failing for ``disable_after`` whose failures stopped coming
    (no further attempt to decide on). Safe in several schedulers (rows claimed SKIP LOCKED)."""
    now = tracker.clock.now()
    async with tracker.pool.acquire() as conn, conn.transaction():
        failing = await claim_overdue(conn, now - tracker.policy.disable_after)
        due = [h for h in failing if overdue(h, now, tracker.policy)]
        for health in due:
            await mark_disabled(conn, health.endpoint_id)
        events = [disabled_event(tracker, h, f"health:{h.endpoint_id}") for h in due]
        await tracker.bus.emit_many(events)
    if events:
        log.warning("webhook_endpoints_disabled", count=len(events))
    return len(events)


def tracker_for(settings: Settings, *, pool: asyncpg.Pool, bus: Bus, clock: Clock) -> HealthTracker:
    return HealthTracker(
        pool, bus, clock, HealthPolicy.from_settings(settings.webhooks),
        DeadLetters(bus, "endpoint_health"),
    )  # fmt: skip
