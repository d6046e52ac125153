"""Number sync: sync.requested → Helix details → the SIM event for what the carrier changed.

Registered on the ``provisioning`` subscriber of ``sim.lifecycle`` (consumers/provisioning.py);
reads the SIM's subscription id, status and current number from ``sims``. The carrier may change
a line without being asked, in two ways:

- its **status**: a line cancelled or suspended at the carrier becomes ``sim.cancelled`` /
  ``sim.suspended``, a suspended SIM whose line is active again ``sim.restored``;
- its **number** (EXTERNAL_APIS §2.3 ``oldPhoneNumber``): a differing number is recorded as a new
  assignment (``number.assigned``, source=sync), an equal one changes nothing.

A SIM without a number — still waiting for its first (the dashboard's "finalize" asks for a
sync), or in ``error`` with a line — gets the outcome the finalizer would have emitted. A SIM in
``error`` without a subscription id (its activation was answered "already active") is looked up
by its ICCID and gets ``sim.activated`` for the line found. A carrier that cannot be read is
skipped: the next round asks again. Every change emitted is recorded in ``sync_changes`` under
the request's ref.

``request_sync`` is the scheduler's side, kept beside the handler it feeds: one
``sync.requested`` per active, suspended or error SIM, its ref the hour's tick (``sync_runs``),
so a round repeated within the hour publishes the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import structlog

from consumers.activation import known_line
from consumers.carrier_deps import CarrierDeps
from consumers.effects import once
from consumers.provisioning_rules import drifted, finalize_outcome, status_drift, sync_ref
from events.envelope import Event
from events.sim import (
    NumberAssigned,
    SimActivated,
    SimCancelled,
    SimRestored,
    SimSuspended,
    SyncRequested,
)
from infra.bus import Bus
from infra.clock import Clock
from infra.helix.client import HelixClient
from infra.helix.errors import HelixError
from infra.helix.models import SubscriberDetails

CONSUMER = "number_sync"
PRODUCER = "simfleet/number_sync"
SCHEDULER = "simfleet/scheduler"
EMIT_CHUNK = 1000
SYNCED_STATUSES = ("active", "suspended", "error")
SELECT_LINE = """
SELECT mobility_subscription_id, current_number, activation_id, status FROM sims WHERE iccid = $1
"""
SYNCED_SIMS = """
SELECT iccid FROM sims
WHERE status = ANY($2::text[]) AND ($1::text[] IS NULL OR iccid = ANY($1::text[]))
ORDER BY iccid
"""
RECORD_RUN = """
INSERT INTO sync_runs (ref, requested, started_at) VALUES ($1, $2, $3)
ON CONFLICT (ref) DO UPDATE SET requested = greatest(sync_runs.requested, EXCLUDED.requested)
"""
RECORD_CHANGE = """
INSERT INTO sync_changes (event_id, ref, iccid, change, detail, found_at)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING
"""
STATUS_EVENTS = {"cancelled": SimCancelled, "suspended": SimSuspended, "restored": SimRestored}
log = structlog.get_logger("simfleet.number_sync")


async def on_sync_requested(event: SyncRequested, deps: CarrierDeps) -> None:
    async def compare(_retried: bool) -> Event | None:
        return await compare_with_carrier(event, deps.helix, deps.pool, deps.clock)

    outcome = await once(deps.ledger, deps.bus, CONSUMER, event, compare)
    if outcome is not None:
        await deps.pool.execute(
            RECORD_CHANGE, outcome.id, event.data.ref, outcome.subject, outcome.type,
            describe(outcome), deps.clock.now(),
        )  # fmt: skip


async def compare_with_carrier(
    event: SyncRequested, helix: HelixClient, pool: asyncpg.Pool, clock: Clock
) -> Event | None:
    iccid = event.data.iccid
    line = await pool.fetchrow(SELECT_LINE, iccid)
    if line is None:
        return None
    sub_id, ours = line["mobility_subscription_id"], line["current_number"]
    try:
        if sub_id is None:
            return await find_lost_line(event, line["status"], helix, pool, clock)
        details = await helix.details(sub_id, iccid=iccid, operation="sync_details")
    except HelixError as err:
        log.warning("sync_details_failed", iccid=iccid, error=str(err))
        return None
    if (drift := status_drift(line["status"], details)) is not None:
        log.info("status_drift_found", iccid=iccid, carrier=details.status, ours=line["status"])
        return STATUS_EVENTS[drift].of(
            event, producer=PRODUCER, time=clock.now(), iccid=iccid, request_id=event.id,
            mobility_subscription_id=sub_id, number=details.number,
        )  # fmt: skip
    if ours is None and (line["activation_id"] is not None or line["status"] == "error"):
        return finalize_outcome(
            details,
            iccid=iccid,
            activation_id=line["activation_id"] or event.id,
            correlationid=event.correlationid,
            producer=PRODUCER,
            now=clock.now(),
        )
    return number_drift(event, sub_id, ours, details, clock.now())


async def find_lost_line(
    event: SyncRequested, status: str, helix: HelixClient, pool: asyncpg.Pool, clock: Clock
) -> Event | None:
    """An ``error`` SIM without subscription: its line, found by ICCID, answers as activated."""
    if status != "error":
        return None  # not activated: nothing to compare
    iccid = event.data.iccid
    _, numbers = await known_line(pool, iccid)
    found = await helix.find_line(iccid, numbers=numbers, operation="sync_find_line")
    if found is None or found.has_failed:
        return None
    log.info("sync_found_line", iccid=iccid, subscription=found.mobility_subscription_id)
    return SimActivated.of(
        event, producer=PRODUCER, time=clock.now(), iccid=iccid, request_id=event.id,
        mobility_subscription_id=found.mobility_subscription_id,
    )  # fmt: skip


def number_drift(
    event: SyncRequested,
    sub_id: str,
    ours: str | None,
    details: SubscriberDetails,
    now: datetime,
) -> NumberAssigned | None:
    if not drifted(ours, details.number):
        return None
    log.info("number_drift_found", iccid=event.data.iccid)
    return NumberAssigned.of(
        event,
        producer=PRODUCER,
        time=now,
        iccid=event.data.iccid,
        request_id=event.id,
        number=details.number,
        source="sync",
        mobility_subscription_id=sub_id,
        previous_number=ours,
    )


def describe(outcome: Event) -> str:
    """One line for the dashboard: what changed (numbers are the operator's own data)."""
    data = outcome.data
    match outcome:
        case NumberAssigned():
            before = getattr(data, "previous_number", None) or "none"
            return f"number {before} → {getattr(data, 'number', '')}"
        case SimActivated():
            return f"line found: subscription {getattr(data, 'mobility_subscription_id', '')}"
    return str(getattr(data, "reason", "") or outcome.type.split(".", 1)[-1])


async def request_sync(
    pool: asyncpg.Pool, bus: Bus, clock: Clock, *, iccids: Sequence[str] | None = None
) -> int:
    """Asks for a sync of every active, suspended and error SIM (or of ``iccids`` among them);
    records the round; returns how many were asked for."""
    now = clock.now()
    ref = sync_ref(now)
    chosen = list(iccids) if iccids is not None else None
    rows = await pool.fetch(SYNCED_SIMS, chosen, list(SYNCED_STATUSES))
    requests = [
        SyncRequested.create(producer=SCHEDULER, time=now, iccid=r["iccid"], ref=ref) for r in rows
    ]
    for start in range(0, len(requests), EMIT_CHUNK):
        await bus.emit_many(requests[start : start + EMIT_CHUNK])
    await pool.execute(RECORD_RUN, ref, len(requests), now)
    return len(requests)
