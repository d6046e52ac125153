"""Verification: number.assigned | verification.requested → Skyline "VERIFY <code>" from another
SIM → verification.sent | verification.skipped; the code arriving on sms.inbound → number.online.

Reads ``sim.lifecycle`` (group ``verification``; partitions concurrently, each in order) and
``sms.inbound`` (group ``verification-replies``, in batches: the topic carries every SMS of the
fleet and a per-message subscriber costs ~330 µs of FastStream each, too much at 2,000/s;
records that do not say "verify" are skipped undecoded). Picks senders from ``sims``,
``sim_numbers`` and ``gateway_ports``; keeps its state in ``verifications`` and
``verification_replies`` (``consumers/verification/store.py``). Timeouts: ``producers/scheduler``.

Sending: a 6-character code, kept per request so a retried send repeats it; a sender that is
not the target, active in a known, registered gateway port — SIMs whose number is verified (or
was, before its own rotation) while there are any, else any (a new fleet: sending does not
depend on the sender's own number) — least recently used first; suspect senders and, on the
automatic retry after a timeout (verification.requested, next attempt), the earlier attempts'
senders only when nobody else is left, another gateway before the same one. The SMS leaves
through the sender's own gateway (``infra/gateway_clients.py``); a sender whose gateway has no
known address is passed over; a refusing sender makes way for the next. Nobody left →
verification.skipped; skipped for want of a sender, it waits and is asked again when another
SIM comes online (here) or the scheduler finds a new sender (``verification_waiting.py``).
Rate limits per sender and per number (``verification_guards.py``): a sender without room is
passed over; when nobody has room the verification is deferred (no event yet) and the scheduler
asks again when a slot frees.
Once per request by the effects ledger: a redelivered request re-emits its outcome, no new SMS.
Matching: the code (case and spacing tolerant) on that number or SIM, received by the gateway
before the expiry (the SMS's own time, not when it is consumed), decides the pending
verification, whichever of reply and verification.sent is consumed first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, cast

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from faststream import Depends
from faststream.kafka import KafkaRouter

from consumers.effects import once
from consumers.verification.guards import Refused, mark_deferred, release_slot, take_slot
from consumers.verification.rules import (
    Sender,
    code_in,
    expiry,
    might_be_reply,
    new_code,
    senders_to_try,
    skip_reason,
    task_id,
    verification_text,
)
from consumers.verification.store import (
    Pending,
    Target,
    mark_skipped,
    record_reply,
    record_sent,
    reserve_code,
)
from consumers.verification.waiting import CAN_SEND, LOCATED_SIMS, resume_awaiting_sender
from events.envelope import Event
from events.sim import (
    NumberAssigned,
    NumberOnline,
    VerificationRequested,
    VerificationSent,
    VerificationSkipped,
)
from events.sms import SmsReceived
from events.topics import SIM_LIFECYCLE, SMS_INBOUND
from infra.clock import Clock
from infra.context import MessageDep
from infra.dead_letters import (
    DeadLetterMiddleware,
    DeadLetters,
    apply_isolating,
    decode_wanted,
    observe_batch,
)
from infra.deps import BusDep, ClockDep, PoolDep, SettingsDep
from infra.gateway_clients import GatewayClients, SkylineDep
from infra.kafka import Bus, consume, consume_batches, is_type
from infra.metrics import VERIFICATIONS
from infra.settings import Settings
from infra.skyline import SkylineError
from policies.rotation import RotationPolicy, next_rotation_at

CONSUMER = "verification"
PRODUCER = "simfleet/verification"
PROVEN_WITHIN = timedelta(days=2)  # a SIM mid-rotation: its last number was verified lately
# Any active SIM in a known, registered port can send: sending does not depend on its own
# number, which is what lets a new fleet verify itself. SIMs with a proven number are the
# senders while there are any (``Verifier.senders``).
SENDERS = f"""
SELECT located.iccid, located.gateway_id, located.port,
       located.number_status = 'verified' AS verified,
       (located.number_status = 'verified' OR EXISTS (
           SELECT 1 FROM sim_numbers n
           WHERE n.iccid = located.iccid AND n.verification_status = 'verified'
             AND n.verified_at > $2)) AS proven,
       (SELECT max(v.sent_at) FROM verifications v
        WHERE v.sender_iccid = located.iccid) AS last_used_at,
       vs.suspect_since IS NOT NULL AS suspect
FROM ({LOCATED_SIMS}) located
LEFT JOIN verification_senders vs ON vs.iccid = located.iccid
WHERE located.iccid <> $1 AND {CAN_SEND}
ORDER BY suspect, proven DESC, verified DESC, last_used_at NULLS FIRST LIMIT 50
"""  # noqa: S608 (constant fragments)
# the number to verify on request: the one asked about, else the SIM's current one
REQUESTED_TARGET = """
SELECT coalesce($2, s.current_number) AS number, s.mobility_subscription_id, n.valid_from
FROM sims s
LEFT JOIN sim_numbers n
    ON n.iccid = s.iccid AND n.e164 = coalesce($2, s.current_number) AND n.valid_to IS NULL
WHERE s.iccid = $1
"""
log = structlog.get_logger("simfleet.verification")


class Verifier:
    """What the handlers share: sends a request's code, builds a matched verification's outcome."""

    def __init__(
        self, skyline: GatewayClients, pool: asyncpg.Pool, clock: Clock, settings: Settings
    ) -> None:
        self.skyline, self.pool, self.clock, self.settings = skyline, pool, clock, settings
        self.policy = RotationPolicy.from_settings(settings.rotation)

    async def verify(self, bus: Bus, request: Event, target: Target) -> None:
        async def act(_retried: bool) -> Event | None:
            return await self.send(request, target)

        await once(self.pool, bus, CONSUMER, request, act)

    async def send(self, request: Event, target: Target) -> Event | None:
        """verification.sent from the first sender that has room and accepts the task; None when
        the rate limits defer it (the scheduler asks again); verification.skipped otherwise."""
        iccid, number, now = request.subject, target.number, self.clock.now()
        code = await reserve_code(self.pool, request, target, new_code(), now)
        errors: list[str] = []
        deferred: list[Refused] = []
        for sender in await self.senders(iccid, now, target):
            if len(errors) >= self.settings.rotation.sender_tries:
                break
            if await self.skyline.address_of(sender.gateway_id) is None:
                continue  # its gateway's address is not known (yet): not a sender
            refused = await take_slot(
                self.pool, request.id, sender.iccid, number, now=now,
                limits=self.settings.verification,
            )  # fmt: skip
            if refused is not None:
                deferred.append(refused)
                if refused.by == "number":
                    break  # no other sender helps
                continue
            error = await self._send_code(request.id, sender, number, code)
            if error is None:
                return self._sent(request, target, sender, code, now)
            errors.append(error)
        if deferred:
            await self._defer(request, deferred, now)
            return None
        return await self._skip(request, target, errors, now)

    async def _send_code(self, request_id: str, sender: Sender, to: str, code: str) -> str | None:
        """The sender's refusal, its rate-limit slot given back; None once the gateway took it."""
        tid = task_id(request_id, sender.iccid)
        try:
            await self.skyline.send_sms(
                sender.gateway_id, sender.port, to, verification_text(code), tid=tid
            )
        except SkylineError as err:
            log.warning("verification_sender_failed", sender=sender.iccid, error=str(err))
            await release_slot(self.pool, request_id, sender.iccid)
            return f"{sender.iccid}: {err}"
        return None

    def _sent(
        self, request: Event, target: Target, sender: Sender, code: str, now: datetime
    ) -> Event:
        VERIFICATIONS.labels("sent").inc()
        return VerificationSent.of(
            request, producer=PRODUCER, time=self.clock.now(), iccid=request.subject,
            request_id=request.id, number=target.number, code=code, sender_iccid=sender.iccid,
            sender_port=sender.port, sender_gateway=sender.gateway_id, sent_at=now,
            expires_at=expiry(now, self.settings.rotation.verification_expiry_s),
        )  # fmt: skip

    async def _defer(self, request: Event, deferred: list[Refused], now: datetime) -> None:
        until = min(r.until for r in deferred)
        await mark_deferred(self.pool, request.id, until, now)
        VERIFICATIONS.labels("deferred").inc()
        log.info("verification_deferred", iccid=request.subject, until=until.isoformat(),
                 by=sorted({r.by for r in deferred}))  # fmt: skip

    async def _skip(
        self, request: Event, target: Target, errors: list[str], now: datetime
    ) -> Event:
        await mark_skipped(self.pool, request.id, now, awaiting_sender=not errors)
        VERIFICATIONS.labels("skipped").inc()
        return VerificationSkipped.of(
            request, producer=PRODUCER, time=now, iccid=request.subject, request_id=request.id,
            number=target.number, reason=skip_reason(errors),
        )  # fmt: skip

    async def senders(self, iccid: str, now: datetime, target: Target) -> list[Sender]:
        """Every possible sender, best first (the send loop stops after ``sender_tries``
        refusals; senders without room under their rate limit do not count)."""
        rows = await self.pool.fetch(SENDERS, iccid, now - PROVEN_WITHIN)
        found = [
            Sender(
                iccid=r["iccid"],
                port=r["port"],
                gateway_id=r["gateway_id"],
                verified=r["verified"],
                proven=r["proven"],
                last_used_at=r["last_used_at"],
                suspect=r["suspect"],
            )
            for r in rows
        ]
        # proven senders only, while there are any: an unproven one starts a new fleet off
        found = [s for s in found if s.proven] or found
        return senders_to_try(
            found, iccid, limit=len(found), avoid_senders=target.avoid_senders,
            avoid_gateways=target.avoid_gateways,
        )  # fmt: skip

    def online(self, p: Pending) -> tuple[Event, datetime]:
        """number.online, valid until the SIM's next rotation."""
        now = self.clock.now()
        until = next_rotation_at(p.iccid, p.assigned_at, now, self.policy)
        log.info("number_online", iccid=p.iccid, number=p.number)
        event = NumberOnline.create(
            producer=PRODUCER, time=now, correlationid=p.correlationid, iccid=p.iccid,
            request_id=p.sent_event_id, number=p.number,
            mobility_subscription_id=p.mobility_subscription_id, online_until=until,
        )  # fmt: skip
        return event, until


async def verifier(
    skyline: SkylineDep, pool: PoolDep, clock: ClockDep, settings: SettingsDep
) -> Verifier:
    return Verifier(skyline, pool, clock, settings)


VerifierDep = Annotated[Verifier, Depends(verifier)]


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
    consume_batches(replies_router, settings.kafka, (SMS_INBOUND,), replies)(on_inbound_sms)
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
