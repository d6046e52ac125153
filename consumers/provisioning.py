"""Provisioning: the carrier-side flows on ``sim.lifecycle``, in one consumer group.

Activation, finalizer, canceller and number sync each handle their own request types (their
modules say how). They share one consumer group, ``provisioning``, because a group reads every
event of its topic whether it wants it or not: as four groups, each SIM cost four deliveries
and four offset commits per lifecycle event for one useful handling.

The group reads batches and runs **SIMs** concurrently rather than partitions: a batch's events
are lined up per SIM (the partition key, so a SIM's events arrive in order) and every line of the
batch runs at once, each in order; the Helix client keeps at most ``HX_CONCURRENCY`` carrier
calls in flight (and its rate limit) across them. A slow carrier call or a finalizer waiting for
a number (bounded by ``HX_NUMBER_WAIT_S``) holds only its own SIM, and the batch's offsets are
committed once, after every line is done. A redelivered batch is harmless: each flow acts once
per request through the effects ledger.

The lines' small Postgres statements — the effects ledger, closing a retry row, the finalizer's
look at the SIM's line — go to Postgres together for the SIMs at the same step
(``infra.coalescing``): one round trip for many SIMs instead of one (and a pool checkout) each,
which is what a SIM's provisioning mostly waited on.

A handler that fails on Postgres or the broker being away waits and tries again (nothing is
parked for an outage, ``infra.outages``); any other failure parks the event on
``sim.lifecycle.dlq``. A batch is worked on for at most ``MAX_BATCH_MS`` before the group
hands this member's partitions to another, which then redoes the unfinished SIMs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter

from consumers import activation, canceller, finalizer, number_sync
from consumers.carrier_deps import CarrierDeps
from consumers.carrier_retries import RequestRetries, close_many
from consumers.effects import Ledger
from consumers.provisioning_rules import number_poll_delays
from events.envelope import Event
from events.sim import (
    SimActivated,
    SimActivationRequested,
    SimCancelRequested,
    SimRestoreRequested,
    SimSuspendRequested,
    SyncRequested,
)
from events.topics import SIM_LIFECYCLE
from infra.bus import BrokerUnavailable
from infra.coalescing import Coalesced
from infra.context import MessageDep
from infra.dead_letters import (
    DeadLetters,
    decode_wanted,
    headers_of,
    observe_batch,
)
from infra.deps import BusDep, ClockDep, HelixDep, PoolDep, SettingsDep
from infra.kafka import consume_batches
from infra.outages import outlasting_outages
from infra.settings import Settings

GROUP = "provisioning"
RETRY_S = 1.0
# a batch may be worked on this long (an outage waited out) before the group counts this
# member gone and gives its partitions to another
MAX_BATCH_MS = 15 * 60 * 1000
Handler = Callable[[Any, CarrierDeps], Awaitable[None]]
HANDLERS: dict[str, Handler] = {
    SimActivationRequested.event_type(): activation.on_activation_requested,
    SimActivated.event_type(): finalizer.on_sim_activated,
    SimCancelRequested.event_type(): canceller.on_status_change_requested,
    SimSuspendRequested.event_type(): canceller.on_status_change_requested,
    SimRestoreRequested.event_type(): canceller.on_status_change_requested,
    SyncRequested.event_type(): number_sync.on_sync_requested,
}
Line = list[tuple[ConsumerRecord[Any, Any], Event]]

log = structlog.get_logger("simfleet.provisioning")


def build_router(settings: Settings) -> KafkaRouter:
    router = KafkaRouter()
    subscriber = consume_batches(
        router, settings.kafka, (SIM_LIFECYCLE,), GROUP, max_poll_interval_ms=MAX_BATCH_MS
    )
    subscriber(on_lifecycle_batch)
    return router


async def on_lifecycle_batch(  # noqa: PLR0917  (FastStream passes the dependencies)
    msg: MessageDep,
    helix: HelixDep,
    bus: BusDep,
    pool: PoolDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> None:
    records = cast(tuple[ConsumerRecord[Any, Any], ...], msg.raw_message)
    dead = DeadLetters(bus, GROUP)
    hx = settings.helix
    delays = tuple(number_poll_delays(hx.number_wait_s, hx.number_poll_s))
    deps = CarrierDeps(
        helix,
        bus,
        pool,
        clock,
        delays,
        ledger=Ledger(pool, coalesce=True),
        close_retry=Coalesced(functools.partial(close_many, pool)),
        held_line=Coalesced(functools.partial(finalizer.held_many, pool)),
        retries=RequestRetries.from_settings(hx),
    )
    lines = per_sim(await decode_wanted(records, HANDLERS, dead))
    # a line ends only when its events are handled or parked; should one fail anyway, the
    # group cancels the others before the batch is read again (no line left running)
    async with asyncio.TaskGroup() as running:
        for line in lines:
            running.create_task(run_line(line, deps, dead))
    observe_batch(msg, records)


def per_sim(decoded: Sequence[tuple[ConsumerRecord[Any, Any], Event]]) -> list[Line]:
    """The batch's events lined up per SIM, each line in the order the SIM's events came."""
    lines: dict[str, Line] = {}
    for record, event in decoded:
        lines.setdefault(event.subject, []).append((record, event))
    return list(lines.values())


async def run_line(line: Line, deps: CarrierDeps, dead: DeadLetters) -> None:
    for record, event in line:
        await handle(record, event, deps, dead)


async def handle(
    record: ConsumerRecord[Any, Any], event: Event, deps: CarrierDeps, dead: DeadLetters
) -> None:
    handler = HANDLERS[event.type]
    with structlog.contextvars.bound_contextvars(
        event_id=event.id,
        event_type=event.type,
        correlationid=event.correlationid,
        partition=record.partition,
        offset=record.offset,
    ):
        # the one place a flow's failure is caught: an outage waited out, anything else parked
        if (err := await outlasting_outages(lambda: handler(event, deps), RETRY_S)) is not None:
            await park(record, event, err, dead)


async def park(
    record: ConsumerRecord[Any, Any], event: Event, err: Exception, dead: DeadLetters
) -> None:
    """Onto the DLQ, waiting for the broker if it is away: the line does not end before."""
    headers = headers_of(record)
    while True:
        try:
            await dead.park(record, headers=headers, error=err, event_id=event.id)
        except BrokerUnavailable as away:
            log.warning("provisioning_park_waiting", error=repr(away))
            await asyncio.sleep(RETRY_S)
            continue
        return
