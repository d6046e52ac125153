"""Webhooks: sms.received, number.online, number.verification_failed, sim.cancelled → signed POSTs;
mdn.changed, number.assigned (by sync), sim.cancelled, sim.reseller_assigned taking a number from a
reseller → number.offline.

Reads ``sms.inbound``, ``sim.lifecycle``, ``webhook.retry`` and ``reseller.registry`` (resends)
in batches → finds each event's SIM, reseller and subscribed endpoints (read tables) → claims
every (message, endpoint) in ``webhook_claims`` → hands the claims to the dispatcher's tasks →
returns, and the offsets are committed. Emits (from the tasks) ``webhook.delivery_succeeded`` |
``webhook.delivery_failed`` per attempt, ``webhook.retry_scheduled`` after the fast attempts,
``webhook.endpoint_disabled`` on 410. A disabled endpoint's deliveries are claimed ``skipped``
(not attempted); ``webhook.endpoint_enabled`` + ``webhook.resend_requested`` send them later.

Why the offset may be committed before any POST: the claim row holds the exact body and a lease,
so after a crash the sweeper resumes it ("nothing lost"); and a redelivered source event finds
its claim and sends nothing (one successful delivery per message and endpoint). Why batches:
a per-message subscriber costs ~330 µs of FastStream per event, too much for 2,000/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, cast

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter

from consumers.verification.store import verification_sms_ids
from consumers.webhooks.attempts import Attempts
from consumers.webhooks.claims import Claims, NewDelivery
from consumers.webhooks.dispatch import Dispatcher
from consumers.webhooks.reads import (
    HANDLED_DECODER,
    SOURCES,
    WANTED_TYPES,
    Change,
    Handled,
    sorted_batch,
)
from consumers.webhooks.rules import (
    NUMBER_OFFLINE,
    NumberLeft,
    SourceEvent,
    is_webhook_source,
    number_left,
    offline_body,
    subscribed,
    webhook_body,
)
from consumers.webhooks.targets import EndpointDirectory, Targets, resolve_left, resolve_targets
from events.reseller import WebhookEndpointEnabled, WebhookResendRequested
from events.sms import SmsReceived
from infra.bus import Bus
from infra.clock import Clock
from infra.context import LoopContext, MessageDep
from infra.dead_letters import DeadLetters, apply_isolating, decode_wanted, observe_batch
from infra.kafka import build_broker, consume_batches
from infra.settings import Settings
from infra.webhook_sender import WebhookSender
from infra.webhook_signing import SecretBox

POSTGRES_RETRY_S = 1.0
ENABLED_WAIT_S = 30.0  # for the read table to show a re-enabled endpoint before its resend
PUBLISHER_CLIENT_ID = "simfleet-webhooks"  # the delivery tasks' own producer

log = structlog.get_logger("simfleet.webhooks")


@dataclass(frozen=True)
class Webhooks:
    """What the handler needs; one per process, in FastStream's context as ``webhooks``."""

    pool: asyncpg.Pool
    dispatcher: Dispatcher
    dead_letters: DeadLetters
    clock: Clock


WebhooksDep = Annotated[Webhooks, LoopContext("webhooks")]


def build_router(settings: Settings, *, group: str = "webhooks") -> KafkaRouter:
    kafka = settings.kafka
    router = KafkaRouter()
    # an SMS code is waited for: the batch is not held back, the fetch as the broker needs
    subscriber = consume_batches(
        router, kafka, SOURCES, group, wait_ms=20, fetch_wait_ms=kafka.kafka_fetch_wait_ms
    )
    subscriber(on_batch)
    return router


async def on_batch(msg: MessageDep, webhooks: WebhooksDep) -> None:
    records = cast(tuple[ConsumerRecord[Any, Any], ...], msg.raw_message)
    # the types handled only (by header): the rest of the topics' traffic is never parsed
    items = await decode_wanted(
        records, WANTED_TYPES, webhooks.dead_letters, decoder=HANDLED_DECODER
    )

    async def act(events: list[Handled]) -> None:
        batch = sorted_batch(events)
        await enabled(webhooks, batch.enabled)
        await deliver_sources(webhooks, batch.changes)
        await resend(webhooks, batch.resends)

    # outages waited out; a bad event parked rather than the batch read again forever
    handled = [(record, cast(Handled, event)) for record, event in items]
    await apply_isolating(handled, act, webhooks.dead_letters, retry_s=POSTGRES_RETRY_S)
    for retry in sorted_batch(event for _record, event in handled).retries:
        d = retry.data
        webhooks.dispatcher.schedule(d.message_id, d.endpoint_id, d.attempt, d.due_at)
    observe_batch(msg, records)


async def deliver_sources(webhooks: Webhooks, events: Sequence[Change]) -> None:
    """Claims every delivery the events make, in their order (a number's ``number.offline``
    before a later ``number.online``), and hands them to the dispatcher."""
    # our own VERIFY codes reaching a SIM are not the reseller's SMS
    ours = await verification_sms_ids(
        webhooks.pool, [e for e in events if isinstance(e, SmsReceived)]
    )
    sources = [e for e in events if is_webhook_source(e) and e.id not in ours]
    left = {n.cause.id: n for n in map(number_left, events) if n is not None}
    targets = await resolve_targets(webhooks.pool, sources)
    left_targets = await resolve_left(webhooks.pool, list(left.values()))
    new: list[NewDelivery] = []
    for event in events:
        if is_webhook_source(event) and event.id not in ours:
            new += deliveries(event, targets.get(event.id))
        if (n := left.get(event.id)) is not None:
            new += offline_deliveries(n, left_targets.get(n.message_id))
    await webhooks.dispatcher.room()
    now = webhooks.clock.now()
    jobs = await webhooks.dispatcher.claims.claim_new(new, now, webhooks.dispatcher.lease_from(now))
    await webhooks.dispatcher.submit(jobs)


def deliveries(event: SourceEvent, found: Targets | None) -> list[NewDelivery]:
    wanted = (
        [s for s in found.subscribers if subscribed(event.type, s.event_types)] if found else []
    )
    body = webhook_body(event, found.sim) if found and wanted else ""
    return [
        NewDelivery(
            event.id, s.endpoint_id, s.reseller_id, event.type, event.correlationid, body,
            skipped=not s.enabled,
        )
        for s in wanted
    ]  # fmt: skip


def offline_deliveries(left: NumberLeft, found: Targets | None) -> list[NewDelivery]:
    wanted = (
        [s for s in found.subscribers if subscribed(NUMBER_OFFLINE, s.event_types)] if found else []
    )
    body = offline_body(left, found.sim) if found and wanted else ""
    return [
        NewDelivery(
            left.message_id, s.endpoint_id, s.reseller_id, NUMBER_OFFLINE,
            left.cause.correlationid, body, skipped=not s.enabled,
        )
        for s in wanted
    ]  # fmt: skip


ENDPOINT_ENABLED = "SELECT enabled FROM reseller_webhooks WHERE endpoint_id = $1"


async def enabled(webhooks: Webhooks, events: Sequence[WebhookEndpointEnabled]) -> None:
    """A re-enabled endpoint: forget that it was disabled here, and wait (bounded) until the read
    table says so too — the resend that usually follows would otherwise find it disabled."""
    for event in events:
        endpoint_id = event.data.endpoint_id
        webhooks.dispatcher.endpoint_enabled(endpoint_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ENABLED_WAIT_S):
                # polling Postgres (the projector's progress), not a flag of this process
                while await webhooks.pool.fetchval(ENDPOINT_ENABLED, endpoint_id) is False:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
        webhooks.dispatcher.endpoint_enabled(endpoint_id)


async def resend(webhooks: Webhooks, requests: Sequence[WebhookResendRequested]) -> None:
    for request in requests:
        d, now = request.data, webhooks.clock.now()
        jobs = await webhooks.dispatcher.claims.resend(
            d.reseller_id,
            ref=d.ref,
            message_ids=d.message_ids,
            endpoint_id=d.endpoint_id,
            since=d.since,
            until=d.until,
            only_failed=d.only_failed,
            now=now,
            lease_until=webhooks.dispatcher.lease_from(now),
        )
        log.info("webhook_resend_started", reseller_id=d.reseller_id, deliveries=len(jobs))
        await webhooks.dispatcher.submit(jobs)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@contextlib.asynccontextmanager
async def dispatching(
    settings: Settings,
    *,
    bus: Bus,
    sender: WebhookSender,
    pool: asyncpg.Pool,
    clock: Clock,
    box: SecretBox,
    stop: asyncio.Event,
) -> AsyncIterator[Webhooks]:
    """What the router needs (``webhooks`` in the context), over a publisher and an HTTP sender
    the caller built (the composition root). Enter before the consuming broker starts, leave
    after it stopped: ``bus`` is a producer of its own, so delivery tasks can finish and record
    what they sent after the consumer stopped taking new work. ``stop`` is set when a dispatcher
    loop fails."""
    claims = Claims(pool, worker_name())
    attempts = Attempts(
        settings.webhooks,
        claims=claims,
        directory=EndpointDirectory(pool, box, settings.webhooks.endpoint_cache_s),
        sender=sender,
        bus=bus,
        clock=clock,
    )
    dispatcher = Dispatcher(settings.webhooks, claims=claims, attempts=attempts, clock=clock)
    async with dispatcher.running(stop):
        yield Webhooks(pool, dispatcher, DeadLetters(bus, "webhooks"), clock)


@contextlib.asynccontextmanager
async def webhook_runtime(
    settings: Settings,
    *,
    bootstrap: str,
    pool: asyncpg.Pool,
    clock: Clock,
    box: SecretBox,
    stop: asyncio.Event,
) -> AsyncIterator[dict[str, object]]:
    """``dispatching`` with a publisher and a sender of its own, for a process wired without the
    composition root (the delivery bench): the objects the router needs, by context name."""
    publisher = build_broker(settings.kafka, bootstrap, client_id=PUBLISHER_CLIENT_ID)
    await publisher.start()
    try:
        async with (
            WebhookSender(settings.webhooks, clock=clock) as sender,
            dispatching(
                settings, bus=Bus(publisher, settings.kafka.topic_prefix), sender=sender,
                pool=pool, clock=clock, box=box, stop=stop,
            ) as webhooks,
        ):  # fmt: skip
            yield {"webhooks": webhooks}
    finally:
        await publisher.stop()
