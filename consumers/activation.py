"""Activation: sim.activation_requested → Helix activate → sim.activated | sim.activation_failed.

Registered on the ``provisioning`` subscriber of ``sim.lifecycle`` (consumers/provisioning.py);
partitions run concurrently, each in order, so a SIM's events (keyed by ICCID) are handled one
at a time. Once per request by the effects ledger:
a redelivered or re-imported request re-emits its recorded outcome and never activates twice.
A carrier refusal is final (``retryable=False``); an unavailable carrier is a retryable failure
(a later delivery of the same request tries again); a lost answer whose retry found the ICCID
active is reported as an unknown outcome, not retried.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from consumers.carrier_deps import CarrierDeps
from consumers.effects import once
from consumers.provisioning_rules import activation_failure
from events.envelope import Event
from events.sim import SimActivated, SimActivationFailed, SimActivationRequested
from infra.helix_errors import HelixError

CONSUMER = "activation"
PRODUCER = "simfleet/activation"
log = structlog.get_logger("simfleet.activation")


async def on_activation_requested(event: SimActivationRequested, deps: CarrierDeps) -> None:
    async def activate(retried: bool) -> Event:
        try:
            sub_id = await deps.helix.activate(event.data.iccid, event.data.imei)
        except HelixError as err:
            return failed(event, err, retried=retried, now=deps.clock.now())
        return activated(event, sub_id, now=deps.clock.now())

    await once(deps.pool, deps.bus, CONSUMER, event, activate)


def activated(request: SimActivationRequested, sub_id: str, *, now: datetime) -> SimActivated:
    return SimActivated.of(
        request,
        producer=PRODUCER,
        time=now,
        iccid=request.data.iccid,
        request_id=request.id,
        mobility_subscription_id=sub_id,
        imei=request.data.imei,
    )


def failed(
    request: SimActivationRequested, err: HelixError, *, retried: bool, now: datetime
) -> SimActivationFailed:
    reason, retryable = activation_failure(err, retried=retried)
    log.warning("activation_failed", iccid=request.data.iccid, reason=reason, retryable=retryable)
    return SimActivationFailed.of(
        request,
        producer=PRODUCER,
        time=now,
        iccid=request.data.iccid,
        request_id=request.id,
        reason=reason,
        retryable=retryable,
        status_code=err.status_code,
    )
