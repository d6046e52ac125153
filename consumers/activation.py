"""Activation: sim.activation_requested → Helix activate → sim.activated | sim.activation_failed.

Registered on the ``provisioning`` subscriber of ``sim.lifecycle`` (consumers/provisioning.py),
which runs SIMs concurrently, each SIM's events (keyed by ICCID) one at a time and in order.
Once per request by the effects ledger: a redelivered or re-imported request re-emits its
recorded outcome and never activates twice.
A carrier refusal is final (``retryable=False``); an unavailable carrier is a retryable failure,
sent again by the scheduler with backoff (``consumers/carrier_retries.py``).

"Already has an active subscription" — our own earlier activation whose answer was lost, a
re-run by an operator, or a line activated elsewhere — is not an error of the SIM: the line is
looked up (``HelixClient.find_line``: the subscription we know, the ICCID, the numbers known
for the SIM) and the activation answered with it (``sim.activated``), so the finalizer gives
the SIM its number. Only a line that cannot be found is a failure, for an operator.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import structlog

from consumers.carrier_deps import CarrierDeps
from consumers.carrier_retries import after_outcome
from consumers.effects import once
from consumers.provisioning_rules import activation_failure
from events.envelope import Event
from events.sim import SimActivated, SimActivationFailed, SimActivationRequested
from infra.helix.errors import ALREADY_ACTIVE, HelixError, HelixOutcomeUnknown

CONSUMER = "activation"
PRODUCER = "simfleet/activation"
NOT_FOUND = (
    "the carrier reports the ICCID already active, but no line for it could be found by "
    "subscription, ICCID or number: look it up at the carrier"
)
# what we know of a SIM that may find its line: the subscription, the numbers it had or shows
KNOWN_SUBSCRIPTION = "SELECT mobility_subscription_id FROM sims WHERE iccid = $1"
KNOWN_NUMBERS = """
SELECT number FROM gateway_ports WHERE iccid = $1 AND number IS NOT NULL
UNION SELECT e164 FROM sim_numbers WHERE iccid = $1
"""
log = structlog.get_logger("simfleet.activation")


async def on_activation_requested(event: SimActivationRequested, deps: CarrierDeps) -> None:
    async def activate(retried: bool) -> Event:
        try:
            sub_id = await deps.helix.activate(event.data.iccid, event.data.imei)
        except HelixError as err:
            if already_active(err):
                return await adopt_line(event, deps)
            return failed(event, err, retried=retried, now=deps.clock.now())
        return activated(event, sub_id, now=deps.clock.now())

    outcome = await once(deps.ledger, deps.bus, CONSUMER, event, activate)
    await after_outcome(
        deps.pool,
        deps.bus,
        event,
        outcome,
        policy=deps.retries,
        now=deps.clock.now(),
        close=deps.close_retry,
    )


def already_active(err: HelixError) -> bool:
    return isinstance(err, HelixOutcomeUnknown) or ALREADY_ACTIVE in err.reason.lower()


async def adopt_line(event: SimActivationRequested, deps: CarrierDeps) -> Event:
    """The SIM's line at the carrier answers the activation; a failure if there is none."""
    iccid, now = event.data.iccid, deps.clock.now()
    sub_id, numbers = await known_line(deps.pool, iccid)
    try:
        line = await deps.helix.find_line(iccid, subscription_id=sub_id, numbers=numbers)
    except HelixError as err:  # unavailable: the retry activates, hears "already" and looks again
        return failed(event, err, retried=True, now=now)
    if line is None or line.has_failed:
        reason = NOT_FOUND if line is None else f"the carrier's line failed: {line.status_reason}"
        log.warning("activation_already_active_unresolved", iccid=iccid, reason=reason)
        return SimActivationFailed.of(
            event, producer=PRODUCER, time=now, iccid=iccid, request_id=event.id, reason=reason,
            retryable=False,
        )  # fmt: skip
    log.info(
        "activation_found_active_line", iccid=iccid, subscription=line.mobility_subscription_id
    )
    return activated(event, line.mobility_subscription_id, now=now)


async def known_line(pool: asyncpg.Pool, iccid: str) -> tuple[str | None, list[str]]:
    sub_id = await pool.fetchval(KNOWN_SUBSCRIPTION, iccid)
    return sub_id, [r["number"] for r in await pool.fetch(KNOWN_NUMBERS, iccid)]


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
