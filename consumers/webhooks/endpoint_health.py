"""Endpoint health: delivery outcomes → ``healthy`` / ``failing`` / ``disabled`` per endpoint.

Reads ``webhook.deliveries`` (delivery_succeeded/failed) and ``reseller.registry`` (endpoint
added/removed/disabled/enabled) in batches → folds them into ``endpoint_health`` with the pure
rules of ``endpoint_health_rules`` → emits ``webhook.endpoint_failing``,
``webhook.endpoint_recovered``, ``webhook.endpoint_disabled`` (failing for ``disable_after``).
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
from typing import Annotated, Any, cast

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter

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
from events.topics import RESELLER_REGISTRY, WEBHOOK_DELIVERIES
from events.webhook import WebhookDeliveryFailed, WebhookDeliverySucceeded
from infra.clock import Clock
from infra.context import LoopContext, MessageDep
from infra.dead_letters import DeadLetters, apply_isolating, decode_wanted, observe_batch
from infra.kafka import GATHER_BYTES, Bus, consume_batches
from infra.settings import Settings

PRODUCER = "simfleet/endpoint-health"
WANTED = {
    cls.event_type(): cls
    for cls in (
        WebhookDeliverySucceeded,
        WebhookDeliveryFailed,
        WebhookEndpointAdded,
        WebhookEndpointRemoved,
        WebhookEndpointDisabled,
        WebhookEndpointEnabled,
    )
}
EndpointEvent = (
    WebhookDeliverySucceeded
    | WebhookDeliveryFailed
    | WebhookEndpointAdded
    | WebhookEndpointRemoved
    | WebhookEndpointDisabled
    | WebhookEndpointEnabled
)
LOCK = """
SELECT endpoint_id, reseller_id, state, failures, failing_since, last_failure_at, last_success_at,
    last_error, last_status_code, last_message_id,
    delivery_offset, registry_offset
FROM endpoint_health WHERE endpoint_id = ANY($1::text[]) ORDER BY endpoint_id FOR UPDATE
"""
UPSERT = """
INSERT INTO endpoint_health (endpoint_id, reseller_id, state, failures, failing_since, last_failure_at, last_success_at,
    last_error, last_status_code, last_message_id,
    delivery_offset, registry_offset, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
ON CONFLICT (endpoint_id) DO UPDATE SET
    reseller_id = EXCLUDED.reseller_id, state = EXCLUDED.state, failures = EXCLUDED.failures,
    failing_since = EXCLUDED.failing_since, last_failure_at = EXCLUDED.last_failure_at,
    last_success_at = EXCLUDED.last_success_at, last_error = EXCLUDED.last_error,
    last_status_code = EXCLUDED.last_status_code, last_message_id = EXCLUDED.last_message_id,
    delivery_offset = EXCLUDED.delivery_offset, registry_offset = EXCLUDED.registry_offset,
    updated_at = now()
"""
# every row exists before the lock: two members creating one row at once would each fold from
# nothing (delivery and registry events of an endpoint may be on different members)
STUB = """
INSERT INTO endpoint_health (endpoint_id, reseller_id)
SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (endpoint_id) DO NOTHING
"""
DELETE = "DELETE FROM endpoint_health WHERE endpoint_id = ANY($1::text[])"
# still registered (a removed endpoint's late failures never disable anything)
CLAIM_OVERDUE = """
SELECT h.* FROM endpoint_health h
WHERE h.state = 'failing' AND h.failing_since <= $1
  AND EXISTS (SELECT 1 FROM reseller_webhooks w WHERE w.endpoint_id = h.endpoint_id AND w.enabled)
ORDER BY h.endpoint_id LIMIT 500 FOR UPDATE OF h SKIP LOCKED
"""
MARK_DISABLED = (
    "UPDATE endpoint_health SET state = 'disabled', updated_at = now() WHERE endpoint_id = $1"
)

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


@dataclass
class Row:
    health: Health
    delivery_offset: int = -1
    registry_offset: int = -1
    removed: bool = False


async def apply(tracker: HealthTracker, events: Sequence[Positioned]) -> None:
    if not events:
        return
    owners = {_endpoint_of(p.event): _reseller_of(p.event) for p in events}
    ids = sorted(owners)
    emitted: list[Event] = []
    async with tracker.pool.acquire() as conn, conn.transaction():
        await conn.execute(STUB, ids, [owners[i] for i in ids])
        rows = {r["endpoint_id"]: _row(r) for r in await conn.fetch(LOCK, ids)}
        for p in events:
            emitted += _fold(tracker, rows, p)
        for row in rows.values():
            if not row.removed:
                await conn.execute(UPSERT, *_values(row))
        await conn.execute(DELETE, [i for i, row in rows.items() if row.removed])
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
        rows = await conn.fetch(CLAIM_OVERDUE, now - tracker.policy.disable_after)
        due = [h for h in (_health(r) for r in rows) if overdue(h, now, tracker.policy)]
        for health in due:
            await conn.execute(MARK_DISABLED, health.endpoint_id)
        events = [disabled_event(tracker, h, f"health:{h.endpoint_id}") for h in due]
        await tracker.bus.emit_many(events)
    if events:
        log.warning("webhook_endpoints_disabled", count=len(events))
    return len(events)


def _health(r: asyncpg.Record) -> Health:
    return Health(
        r["endpoint_id"], r["reseller_id"], r["state"], r["failures"], r["failing_since"],
        r["last_failure_at"], r["last_success_at"], r["last_error"], r["last_status_code"],
        r["last_message_id"],
    )  # fmt: skip


def _row(r: asyncpg.Record) -> Row:
    return Row(_health(r), r["delivery_offset"], r["registry_offset"])


def _values(row: Row) -> tuple[object, ...]:
    h = row.health
    return (
        h.endpoint_id, h.reseller_id, h.state, h.failures, h.failing_since, h.last_failure_at,
        h.last_success_at, h.last_error, h.last_status_code, h.last_message_id,
        row.delivery_offset, row.registry_offset,
    )  # fmt: skip


def tracker_for(settings: Settings, *, pool: asyncpg.Pool, bus: Bus, clock: Clock) -> HealthTracker:
    return HealthTracker(
        pool, bus, clock, HealthPolicy.from_settings(settings.webhooks),
        DeadLetters(bus, "endpoint_health"),
    )  # fmt: skip
