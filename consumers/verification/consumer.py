"""Verification: number.assigned | verification.requested → Skyline "VERIFY <code>" from another
SIM → verification.sent | verification.skipped; the code arriving on sms.inbound → number.online.

Reads ``sim.lifecycle`` (group ``verification``; partitions concurrently, each in order) and
``sms.inbound`` (group ``verification-replies``, in batches: the topic carries every SMS of the
fleet and a per-message subscriber costs ~330 µs of FastStream each, too much at 2,000/s;
records that do not say "verify" are skipped undecoded). Picks senders from ``sims``,
``sim_numbers`` and ``gateway_ports``; keeps its state in ``verifications`` and
``verification_replies`` (``consumers/verification/store.py``). Timeouts: ``producers/scheduler``.

Sending (senders, rate limits, once per request): ``consumers/verification/verifier.py``.
Matching: the code (case and spacing tolerant) on that number or SIM, received by the gateway
before the expiry (the SMS's own time, not when it is consumed), decides the pending
verification, whichever of reply and verification.sent is consumed first.
"""

from __future__ import annotations

from typing import Any, cast

import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter

from consumers.verification.rules import code_in, might_be_reply
from consumers.verification.store import Target, record_reply, record_sent
from consumers.verification.verifier import CONSUMER, PRODUCER, VerifierDep
from consumers.verification.waiting import resume_awaiting_sender
from events.sim import NumberAssigned, NumberOnline, VerificationRequested, VerificationSent
from events.sms import SmsReceived
from events.topics import SIM_LIFECYCLE, SMS_INBOUND
from infra.context import MessageDep
from infra.dead_letters import (
    DeadLetterMiddleware,
    DeadLetters,
    apply_isolating,
    decode_wanted,
    observe_batch,
)
from infra.deps import BusDep
from infra.kafka import GATHER_BYTES, consume, consume_batches, is_type
from infra.metrics import VERIFICATIONS
from infra.settings import Settings

# the number to verify on request: the one asked about, else the SIM's current one
REQUESTED_TARGET = """
SELECT coalesce($2, s.current_number) AS number, s.mobility_subscription_id, n.valid_from
FROM sims s
LEFT JOIN sim_numbers n
    ON n.iccid = s.iccid AND n.e164 = coalesce($2, s.current_number) AND n.valid_to IS NULL
WHERE s.iccid = $1
"""
# A reply is awaited for seconds (its SMS crosses the carrier first), so its consumer's fetch
# may wait this long on the broker for more of sms.inbound instead of being answered at every
# produce as the webhook consumer's is: at 1,000 SMS/s that was ~50 fetches and ~50 offset
# commits a second of the workers' ~250. On Tansu too, which holds every fetch for its whole
# wait: a reply waits up to this long there, where the 20 ms of its other consumers made 50 idle
# fetches a second (the broker's CPU being the limit there)
REPLY_GATHER_MS = 100
log = structlog.get_logger("simfleet.verification")


def build_router(settings: Settings) -> KafkaRouter:
    lifecycle_router = KafkaRouter(middlewares=(DeadLetterMiddleware,))
    lifecycle = consume(lifecycle_router, settings.kafka, SIM_LIFECYCLE, CONSUMER, max_workers=8)
    lifecycle(filter=is_type(NumberAssigned))(on_number_assigned)
    lifecycle(filter=is_type(VerificationRequested))(on_verification_requested)
    lifecycle(filter=is_type(VerificationSent))(on_verification_sent)
    lifecycle(filter=is_type(NumberOnline))(on_number_online)
    lifecycle(ignore_other_types)
    replies_router = KafkaRouter()
    replies = f"{CONSUMER}-replies"
    consume_batches(
        replies_router, settings.kafka, (SMS_INBOUND,), replies, gather_bytes=GATHER_BYTES,
        fetch_wait_ms=REPLY_GATHER_MS,
    )(on_inbound_sms)  # fmt: skip
    router = KafkaRouter()
    router.include_routers(lifecycle_router, replies_router)
    return router


async def on_number_assigned(event: NumberAssigned, flow: VerifierDep, bus: BusDep) -> None:
    d = event.data
    await flow.verify(bus, event, Target(d.number, d.mobility_subscription_id, event.time))


async def on_verification_requested(
    event: VerificationRequested, flow: VerifierDep, bus: BusDep
) -> None:
    d = event.data
    line = await flow.pool.fetchrow(REQUESTED_TARGET, d.iccid, d.number)
    if line is None or line["number"] is None:
        log.warning("verification_without_number", iccid=d.iccid)
        return
    if d.number is not None and line["valid_from"] is None:
        # a retry or deferral (or a request) for a number the SIM no longer has: its
        # rotation's own verification decides the new one, and must not be superseded
        log.info("verification_retry_of_old_number", iccid=d.iccid, ref=d.ref)
        return
    target = Target(
        line["number"], line["mobility_subscription_id"], line["valid_from"], d.attempt,
        d.avoid_senders, d.avoid_gateways, d.started_at,
    )  # fmt: skip
    await flow.verify(bus, event, target)


async def on_verification_sent(event: VerificationSent, flow: VerifierDep, bus: BusDep) -> None:
    if await record_sent(flow.pool, bus, event, flow.clock.now(), flow.online):
        VERIFICATIONS.labels("online").inc()


async def on_number_online(event: NumberOnline, flow: VerifierDep, bus: BusDep) -> None:
    """A SIM online is a new possible sender for verifications waiting for one."""
    now = flow.clock.now()
    await resume_awaiting_sender(flow.pool, bus, now, PRODUCER, sender=event.data.iccid)


async def ignore_other_types() -> None:
    """Every other sim.lifecycle event is someone else's."""


async def on_inbound_sms(msg: MessageDep, flow: VerifierDep, bus: BusDep) -> None:
    records = cast(tuple[ConsumerRecord[Any, Any], ...], msg.raw_message)
    dead = DeadLetters(bus, f"{CONSUMER}-replies")

    async def record_replies(replies: list[SmsReceived]) -> None:
        for sms in replies:
            code = code_in(sms.data.body)
            now = flow.clock.now()
            if code and await record_reply(flow.pool, bus, sms, code, now=now, outcome=flow.online):
                VERIFICATIONS.labels("online").inc()

    await apply_isolating(await possible_replies(records, dead), record_replies, dead)
    observe_batch(msg, records)


async def possible_replies(
    records: tuple[ConsumerRecord[Any, Any], ...], dead: DeadLetters
) -> list[tuple[ConsumerRecord[Any, Any], SmsReceived]]:
    admit = lambda record: might_be_reply(record.value)  # noqa: E731  (cheap, before parsing)
    wanted = (SmsReceived.event_type(),)
    found = await decode_wanted(records, wanted, dead, admit=admit)
    return [(record, cast(SmsReceived, event)) for record, event in found]
