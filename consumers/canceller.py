"""Canceller: sim.cancel_requested | sim.suspend_requested | sim.restore_requested
→ Helix details (the current MDN) → Helix status change
→ sim.cancelled | sim.suspended | sim.restored, or sim.cancel_failed | sim.status_change_failed.

Registered on the ``provisioning`` subscriber of ``sim.lifecycle`` (consumers/provisioning.py);
reads the SIM's subscription id from ``sims``. The carrier changes a line's status by its
current number, not by the subscription (EXTERNAL_APIS §2.5), so the line's details are read
first, for the number. A line already where the request would take it ("already cancelled",
already suspended) counts as done. Once per request by the effects ledger. An unavailable
carrier, or a line without a number yet, is a retryable failure (resent by the scheduler with
backoff, then shown as needing an operator: ``consumers/carrier_retries.py``); a refusal is a
final one.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import structlog

from consumers.carrier_deps import CarrierDeps
from consumers.carrier_retries import after_outcome
from consumers.effects import once
from consumers.provisioning_rules import already_in_state
from events.envelope import Event
from events.sim import (
    SimCancelFailed,
    SimCancelled,
    SimCancelRequested,
    SimRestored,
    SimRestoreRequested,
    SimStatusChangeFailed,
    SimSuspended,
    SimSuspendRequested,
    StatusAction,
)
from infra.clock import Clock
from infra.helix.client import HelixClient
from infra.helix.errors import HelixError

CONSUMER = "canceller"
PRODUCER = "simfleet/canceller"
Request = SimCancelRequested | SimSuspendRequested | SimRestoreRequested
ACTIONS: dict[type[Event], StatusAction] = {
    SimCancelRequested: "cancel",
    SimSuspendRequested: "suspend",
    SimRestoreRequested: "restore",
}
DONE: dict[StatusAction, type[SimCancelled | SimSuspended | SimRestored]] = {
    "cancel": SimCancelled,
    "suspend": SimSuspended,
    "restore": SimRestored,
}
SELECT_SUBSCRIPTION = "SELECT mobility_subscription_id FROM sims WHERE iccid = $1"
log = structlog.get_logger("simfleet.canceller")


async def on_status_change_requested(event: Request, deps: CarrierDeps) -> None:
    async def change(_retried: bool) -> Event:
        action = ACTIONS[type(event)]
        return await change_status(event, action, deps.helix, deps.pool, deps.clock)

    outcome = await once(deps.ledger, deps.bus, CONSUMER, event, change)
    await after_outcome(
        deps.pool,
        deps.bus,
        event,
        outcome,
        policy=deps.retries,
        now=deps.clock.now(),
        close=deps.close_retry,
    )


async def change_status(
    event: Request, action: StatusAction, helix: HelixClient, pool: asyncpg.Pool, clock: Clock
) -> Event:
    iccid = event.data.iccid
    sub_id = await pool.fetchval(SELECT_SUBSCRIPTION, iccid)
    if sub_id is None:
        return failed(event, action, "the SIM has no carrier subscription", now=clock.now())
    try:
        details = await helix.details(sub_id, iccid=iccid, operation=f"{action}_get_details")
        if already_in_state(action, details):
            return done(event, action, sub_id, details.number, now=clock.now())
        if not details.phone_number:
            reason = "the line has no number yet and the carrier changes status by number"
            return failed(event, action, reason, retryable=True, now=clock.now())
        await helix.set_status(
            details.phone_number,
            action,
            iccid=iccid,
            subscription_id=sub_id,
            operation=f"{action}_subscription",
        )
    except HelixError as err:
        return failed(event, action, err.reason, err.retryable, err.status_code, now=clock.now())
    return done(event, action, sub_id, details.number, now=clock.now())


def done(
    event: Request, action: StatusAction, sub_id: str, number: str | None, *, now: datetime
) -> Event:
    return DONE[action].of(
        event,
        producer=PRODUCER,
        time=now,
        iccid=event.data.iccid,
        request_id=event.id,
        mobility_subscription_id=sub_id,
        number=number,
    )


def failed(
    event: Request,
    action: StatusAction,
    reason: str,
    retryable: bool = False,
    status_code: int | None = None,
    *,
    now: datetime,
) -> Event:
    log.warning("status_change_failed", iccid=event.data.iccid, action=action, reason=reason)
    fields: dict[str, object] = {"iccid": event.data.iccid, "request_id": event.id}
    fields |= {"reason": reason, "retryable": retryable, "status_code": status_code}
    if action == "cancel":
        return SimCancelFailed.of(event, producer=PRODUCER, time=now, **fields)
    return SimStatusChangeFailed.of(event, producer=PRODUCER, time=now, action=action, **fields)
