"""Number sync: sync.requested → Helix details → number.assigned (source=sync) only on drift.

Registered on the ``provisioning`` subscriber of ``sim.lifecycle`` (consumers/provisioning.py); reads and the SIM's subscription id and current
number from ``sims``. The carrier may change a number without being asked (EXTERNAL_APIS §2.3
``oldPhoneNumber``); a differing number is recorded as a new assignment, an equal one changes
nothing. A SIM still waiting for its first number (the dashboard's "finalize", which asks for a
sync) gets what the finalizer would have emitted, with the same ids. A carrier that cannot be
read is skipped: the next round asks again.

``request_sync`` is the scheduler's side: one ``sync.requested`` per active SIM, its ref the
hour's tick, so a round repeated within the hour publishes the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import structlog

from consumers.carrier_deps import CarrierDeps
from consumers.effects import once
from consumers.provisioning_rules import drifted, finalize_outcome, sync_ref
from events.envelope import Event
from events.sim import NumberAssigned, SyncRequested
from infra.clock import Clock
from infra.helix import HelixClient
from infra.helix_errors import HelixError
from infra.kafka import Bus

CONSUMER = "number_sync"
PRODUCER = "simfleet/number_sync"
SCHEDULER = "simfleet/scheduler"
EMIT_CHUNK = 1000
SELECT_LINE = """
SELECT mobility_subscription_id, current_number, activation_id FROM sims WHERE iccid = $1
"""
ACTIVE_SIMS = """
SELECT iccid FROM sims
WHERE status = 'active' AND ($1::text[] IS NULL OR iccid = ANY($1::text[]))
ORDER BY iccid
"""
log = structlog.get_logger("simfleet.number_sync")


async def on_sync_requested(event: SyncRequested, deps: CarrierDeps) -> None:
    async def compare(_retried: bool) -> Event | None:
        return await compare_with_carrier(event, deps.helix, deps.pool, deps.clock)

    await once(deps.pool, deps.bus, CONSUMER, event, compare)


async def compare_with_carrier(
    event: SyncRequested, helix: HelixClient, pool: asyncpg.Pool, clock: Clock
) -> Event | None:
    iccid = event.data.iccid
    line = await pool.fetchrow(SELECT_LINE, iccid)
    if line is None or line["mobility_subscription_id"] is None:
        return None  # not activated: nothing to compare
    sub_id, ours = line["mobility_subscription_id"], line["current_number"]
    try:
        details = await helix.details(sub_id, iccid=iccid, operation="sync_details")
    except HelixError as err:
        log.warning("sync_details_failed", iccid=iccid, error=str(err))
        return None
    if ours is None and line["activation_id"] is not None:
        return finalize_outcome(
            details,
            iccid=iccid,
            activation_id=line["activation_id"],
            correlationid=event.correlationid,
            producer=PRODUCER,
            now=clock.now(),
        )
    if not drifted(ours, details.number):
        return None
    log.info("number_drift_found", iccid=iccid)
    return NumberAssigned.of(
        event,
        producer=PRODUCER,
        time=clock.now(),
        iccid=iccid,
        request_id=event.id,
        number=details.number,
        source="sync",
        mobility_subscription_id=sub_id,
        previous_number=ours,
    )


async def request_sync(
    pool: asyncpg.Pool, bus: Bus, clock: Clock, *, iccids: Sequence[str] | None = None
) -> int:
    """Asks for a sync of every active SIM (or of ``iccids`` among them); returns how many."""
    now = clock.now()
    rows = await pool.fetch(ACTIVE_SIMS, list(iccids) if iccids is not None else None)
    requests = [
        SyncRequested.create(producer=SCHEDULER, time=now, iccid=r["iccid"], ref=sync_ref(now))
        for r in rows
    ]
    for start in range(0, len(requests), EMIT_CHUNK):
        await bus.emit_many(requests[start : start + EMIT_CHUNK])
    return len(requests)
