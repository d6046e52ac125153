"""The verification flow's sending side, shared by its handlers (``Verifier``): a request's code
from another SIM, and a matched verification's number.online.

Sending: a 6-character code, kept per request so a retried send repeats it; a sender that is
not the target, active in a known, registered gateway port — SIMs whose number is verified (or
was, before its own rotation) while there are any, else any (a new fleet: sending does not
depend on the sender's own number) — least recently used first; suspect senders and, on the
automatic retry after a timeout (verification.requested, next attempt), the earlier attempts'
senders only when nobody else is left, another gateway before the same one. The SMS leaves
through the sender's own gateway (``infra/gateway_clients.py``); a sender whose gateway has no
known address is passed over; a refusing sender makes way for the next. Nobody left →
verification.skipped; skipped for want of a sender, it waits and is asked again when another
SIM comes online (``consumer.on_number_online``) or the scheduler finds a new sender
(``waiting.py``). Rate limits per sender and per number (``guards.py``): a sender without room is
passed over; when nobody has room the verification is deferred (no event yet) and the scheduler
asks again when a slot frees.
Once per request by the effects ledger: a redelivered request re-emits its outcome, no new SMS.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import asyncpg
import structlog
from faststream import Depends

from consumers.effects import once
from consumers.verification.guards import Refused, mark_deferred, release_slot, take_slot
from consumers.verification.rules import (
    Sender,
    expiry,
    new_code,
    senders_to_try,
    skip_reason,
    task_id,
    verification_text,
)
from consumers.verification.store import Pending, Target, mark_skipped, reserve_code
from consumers.verification.waiting import CAN_SEND, LOCATED_SIMS
from events.envelope import Event
from events.sim import NumberOnline, VerificationSent, VerificationSkipped
from infra.bus import Bus
from infra.clock import Clock
from infra.deps import ClockDep, PoolDep, SettingsDep
from infra.gateway_clients import GatewayClients, SkylineDep
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
