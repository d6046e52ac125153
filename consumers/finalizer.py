"""Finalizer: sim.activated → Helix details → number.assigned (source=activation).

Registered on the ``provisioning`` subscriber of ``sim.lifecycle`` (consumers/provisioning.py),
which runs SIMs concurrently, each SIM's events in order. The carrier activates a line before
it has a number (EXTERNAL_APIS §2.2), so the details may show none yet. Design — two tiers,
neither holding a SIM for long:

1. in the handler, a *bounded* wait: the details are re-read with doubling pauses for at most
   ``HX_NUMBER_WAIT_S`` (10 s by default; the sandbox and most real lines need seconds). Only
   this SIM's later events wait meanwhile (the price of keeping them in order); other SIMs go
   on, and the batch's offsets are committed once every SIM in it is done.
2. past that, the handler emits nothing and the SIM stays ``provisioning``; the composition root
   runs ``sweep_unfinalized`` every ``HX_FINALIZE_SWEEP_S`` (5 min, the original's cadence),
   which re-reads the details of every ``provisioning`` SIM without a number (``sims``).

Both answer the same ``sim.activated`` (kept as ``sims.activation_id``), so they emit the same
event ids, and both record in the effects ledger under this consumer: a redelivered
``sim.activated`` re-emits the number instead of asking again. A carrier that reports the
activation failed (``ACTIVATION_FAILED``, "Timed Out") yields sim.activation_failed. A carrier
unavailable past the client's retries leaves the SIM to the sweep as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import structlog

from consumers.carrier_deps import CarrierDeps
from consumers.effects import once, record
from consumers.provisioning_rules import finalization, finalize_outcome
from events.envelope import Event, new_ref
from events.sim import NumberAssigned, SimActivated
from infra.bus import Bus
from infra.clock import Clock
from infra.helix.client import HelixClient
from infra.helix.errors import HelixError, HelixUnavailable
from infra.helix.models import SubscriberDetails

CONSUMER = "finalizer"
PRODUCER = "simfleet/finalizer"
SWEEP_LIMIT = 1000
UNFINALIZED = """
SELECT iccid, mobility_subscription_id, activation_id FROM sims
WHERE status = 'provisioning' AND current_number IS NULL
  AND mobility_subscription_id IS NOT NULL AND activation_id IS NOT NULL
ORDER BY activated_at LIMIT $1
"""
HELD_MANY = """
SELECT iccid, mobility_subscription_id, current_number FROM sims WHERE iccid = ANY($1::text[])
"""
log = structlog.get_logger("simfleet.finalizer")


async def on_sim_activated(event: SimActivated, deps: CarrierDeps) -> None:
    async def assign(_retried: bool) -> Event | None:
        details = await wait_for_number(deps.helix, event, deps.number_delays)
        if details is None:
            return None  # the carrier is unavailable: the sweep asks again later
        outcome = finalize_outcome(
            details,
            iccid=event.data.iccid,
            activation_id=event.id,
            correlationid=event.correlationid,
            producer=PRODUCER,
            now=deps.clock.now(),
        )
        if isinstance(outcome, NumberAssigned) and await holds(deps, event, outcome):
            # an "already active" activation found the line the SIM already has: its number
            # is not new, and assigning it again would only verify it again
            log.info("finalize_line_already_held", iccid=event.data.iccid)
            return None
        return outcome

    await once(deps.ledger, deps.bus, CONSUMER, event, assign)


async def holds(deps: CarrierDeps, event: SimActivated, assigned: NumberAssigned) -> bool:
    """The SIM already has this line and this number."""
    held = await deps.held_line(event.data.iccid)
    return held == (event.data.mobility_subscription_id, assigned.data.number)


async def held_many(
    pool: asyncpg.Pool, iccids: Sequence[str]
) -> list[tuple[str | None, str | None] | None]:
    """Per ICCID the SIM's line and number in ``sims`` (None: not there), in one statement."""
    rows = await pool.fetch(HELD_MANY, list(dict.fromkeys(iccids)))
    held = {r["iccid"]: (r["mobility_subscription_id"], r["current_number"]) for r in rows}
    return [held.get(iccid) for iccid in iccids]


async def wait_for_number(
    helix: HelixClient, event: SimActivated, delays: Sequence[float]
) -> SubscriberDetails | None:
    """The line's details once it has a number (or failed) or the waiting time is up; None
    when the carrier is unavailable."""
    sub_id, iccid = event.data.mobility_subscription_id, event.data.iccid
    try:
        details = await helix.details(sub_id, iccid=iccid)
        for delay in delays:
            if finalization(details) != "wait":
                break
            await asyncio.sleep(delay)
            details = await helix.details(sub_id, iccid=iccid)
    except HelixUnavailable as err:
        log.warning("finalize_details_unavailable", iccid=iccid, error=str(err))
        return None
    return details


async def sweep_unfinalized(
    pool: asyncpg.Pool, bus: Bus, helix: HelixClient, clock: Clock, *, limit: int = SWEEP_LIMIT
) -> int:
    """Re-reads the details of SIMs still waiting for a number; returns how many got an answer.

    Run periodically by the composition root. Lines are read concurrently (the Helix client's
    concurrency and rate limit bound the load); one failing line never stops the sweep.
    """
    rows = await pool.fetch(UNFINALIZED, limit)

    async def finalize(row: asyncpg.Record) -> bool:
        try:
            details = await helix.details(row["mobility_subscription_id"], iccid=row["iccid"])
        except HelixError as err:
            log.warning("finalize_sweep_details_failed", iccid=row["iccid"], error=str(err))
            return False
        outcome = finalize_outcome(
            details,
            iccid=row["iccid"],
            activation_id=row["activation_id"],
            correlationid=row["activation_id"],
            producer=PRODUCER,
            now=clock.now(),
        )
        if outcome is None:
            return False
        await record(pool, CONSUMER, row["activation_id"], outcome)
        await bus.emit(outcome)
        return True

    # one run: its carrier calls name it in the Helix log (the tasks copy the bound context)
    with structlog.contextvars.bound_contextvars(run_id=f"finalize-sweep:{new_ref()}"):
        answered = sum(await asyncio.gather(*(finalize(r) for r in rows)))
    if rows:
        log.info("finalize_sweep_done", waiting=len(rows), answered=answered)
    return answered
