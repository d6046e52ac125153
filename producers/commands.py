"""Operator commands (dashboard, CLI, the old ``/run`` endpoints) → ``*.requested`` events.

The only write path from the UI. Reads the SIMs' read rows (``projections.sim_target_queries``)
to decide per SIM whether the request makes sense, emits one request per eligible SIM on
``sim.lifecycle`` (resends on ``reseller.registry``), and returns the ids it emitted and the
SIMs it skipped with the reason. Every request names its actor (``infra.actors``: who asked,
through which channel) and, where the action is destructive, the operator's reason; both land
in the operator audit (``projections.audit``). Every invocation is a new request: one fresh ``ref`` per
click, so clicking twice asks twice. Outcomes appear later on the SIM's timeline.

``finalize`` has no event of its own: in the original system it was the subscriber-details
lookup that fills in a provisioning SIM's number, which is what ``sync.requested`` asks the
number-sync consumer to do; its ref reads ``finalize:<uuid>`` so the intent stays visible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg

from events.envelope import Event, new_ref
from events.reseller import WebhookResendRequested
from events.sim import (
    MdnChangeRequested,
    SimActivationRequested,
    SimCancelRequested,
    SimRestoreRequested,
    SimSuspendRequested,
    SyncRequested,
    VerificationRequested,
)
from infra.bus import Bus
from infra.clock import Clock
from projections import log_queries, sim_target_queries
from projections.read_models import View
from projections.sim_target_queries import RunAction, SimTarget

PRODUCER = "simfleet/commands"
MAX_SELECTION = 1000
SimAction = Literal[
    "activate", "finalize", "rotate", "sync", "cancel", "suspend", "restore", "verify"
]
SIM_ACTIONS: tuple[SimAction, ...] = (
    "activate",
    "finalize",
    "rotate",
    "sync",
    "cancel",
    "suspend",
    "restore",
    "verify",
)
# destructive: the audit must say why (a cancel cannot be undone)
REASON_REQUIRED: frozenset[SimAction] = frozenset({"cancel"})
REQUEST_TYPES: dict[SimAction, type[Event]] = {
    "activate": SimActivationRequested,
    "finalize": SyncRequested,
    "rotate": MdnChangeRequested,
    "sync": SyncRequested,
    "cancel": SimCancelRequested,
    "suspend": SimSuspendRequested,
    "restore": SimRestoreRequested,
    "verify": VerificationRequested,
}


class CommandRefused(ValueError):
    """The request as a whole makes no sense (no SIM, too many, a cancel without reason)."""


class Skipped(View):
    subject: str
    reason: str


class Requested(View):
    action: str
    event_ids: tuple[str, ...]
    subjects: tuple[str, ...]
    skipped: tuple[Skipped, ...] = ()


def refusal(
    action: SimAction, sim: SimTarget, *, stale_before: datetime | None = None
) -> str | None:
    """Why ``action`` is not requested for ``sim`` (None = request it). An activation requested
    after ``stale_before`` (always, when None) and still without an outcome is in flight."""
    subscribed = sim.mobility_subscription_id is not None
    waiting = sim.activation_requested_at
    match action:
        case "activate" if sim.status not in ("pending", "error"):
            return f"status is {sim.status}, activation needs pending or error"
        case "activate" if sim.imei is None:
            return "no IMEI on record"
        case "activate" if waiting is not None and (stale_before is None or waiting > stale_before):
            return f"an activation requested at {waiting:%Y-%m-%d %H:%M:%S} is queued or in flight"
        case "finalize" if sim.status not in ("provisioning", "error") and (
            sim.status != "active" or sim.current_number
        ):
            return (
                f"status is {sim.status}, finalize needs provisioning or error "
                "(or active without number)"
            )
        case "rotate" | "suspend" | "verify" if sim.status != "active":
            return f"status is {sim.status}, {action} needs active"
        case "rotate" if not subscribed:
            return "no subscription id yet"
        case "verify" if sim.current_number is None:
            return "no current number"
        case "sync" if sim.status not in ("active", "provisioning", "suspended", "error"):
            return f"status is {sim.status}, sync needs active, provisioning, suspended or error"
        case "sync" if not subscribed and sim.status != "error":  # error: found by its ICCID
            return "no subscription id yet"
        case "cancel" if sim.status == "cancelled":
            return "already cancelled"
        case "restore" if sim.status != "suspended":
            return f"status is {sim.status}, restore needs suspended"
    return None


def request_event(
    action: SimAction, sim: SimTarget, *, ref: str, actor: str, reason: str | None, clock: Clock
) -> Event:
    fields: dict[str, Any] = {
        "iccid": sim.iccid,
        "ref": f"finalize:{ref}" if action == "finalize" else ref,
        "requested_by": actor,
        "reason": reason,
    }
    if action == "activate":
        fields |= {"imei": sim.imei, "reseller_id": sim.reseller_id}
        fields |= {"gateway_id": sim.gateway_id, "port": sim.port}
    if action == "verify":
        fields["number"] = sim.current_number
    return REQUEST_TYPES[action].create(producer=PRODUCER, time=clock.now(), **fields)


@dataclass(frozen=True)
class Commands:
    pool: asyncpg.Pool
    bus: Bus
    clock: Clock
    request_stale_s: float = 3600.0  # HX_REQUEST_STALE_S

    @property
    def stale_before(self) -> datetime:
        return self.clock.now() - timedelta(seconds=self.request_stale_s)

    async def request(
        self, action: SimAction, iccids: Iterable[str], actor: str, reason: str | None = None
    ) -> Requested:
        """``action`` for each listed SIM that allows it; unknown/ineligible SIMs are skipped."""
        wanted = list(dict.fromkeys(i.strip() for i in iccids if i.strip()))
        reason = reason.strip() if reason and reason.strip() else None
        if not wanted:
            raise CommandRefused("no SIM selected")
        if len(wanted) > MAX_SELECTION:
            raise CommandRefused(f"at most {MAX_SELECTION} SIMs per request")
        if action in REASON_REQUIRED and reason is None:
            raise CommandRefused(f"a {action} needs a reason")
        known = {t.iccid: t for t in await sim_target_queries.sim_targets(self.pool, wanted)}
        missing = [Skipped(subject=i, reason="unknown SIM") for i in wanted if i not in known]
        return await self._emit(action, list(known.values()), actor, reason, missing)

    async def run(self, action: RunAction, limit: int, actor: str) -> Requested:
        """The old per-worker run endpoints: up to ``limit`` SIMs the worker would pick."""
        if not 1 <= limit <= MAX_SELECTION:
            raise CommandRefused(f"limit must be between 1 and {MAX_SELECTION}")
        targets = await sim_target_queries.run_candidates(
            self.pool, action, limit, self.clock.now(), stale_before=self.stale_before
        )
        return await self._emit(action, targets, actor, None, [])

    async def _emit(
        self,
        action: SimAction,
        targets: Sequence[SimTarget],
        actor: str,
        reason: str | None,
        skipped: list[Skipped],
    ) -> Requested:
        ref = new_ref()
        events = []
        for sim in targets:
            why = refusal(action, sim, stale_before=self.stale_before)
            if why is not None:
                skipped.append(Skipped(subject=sim.iccid, reason=why))
                continue
            events.append(
                request_event(action, sim, ref=ref, actor=actor, reason=reason, clock=self.clock)
            )
        await self.bus.emit_many(events)
        return Requested(
            action=action,
            event_ids=tuple(e.id for e in events),
            subjects=tuple(e.subject for e in events),
            skipped=tuple(skipped),
        )

    async def resend_webhooks(
        self,
        actor: str,
        *,
        delivery_ids: Sequence[int] = (),
        reseller_id: str | None = None,
        only_failed: bool = False,
    ) -> Requested:
        """Selected deliveries (one request per reseller endpoint), or a reseller's history."""
        if delivery_ids:
            rows = await log_queries.deliveries_by_id(self.pool, list(delivery_ids))
            groups: dict[tuple[str, str], list[str]] = {}
            for row in rows:
                groups.setdefault((row.reseller_id, row.endpoint), []).append(row.message_id)
            found = {row.id for row in rows}
            skipped = [
                Skipped(subject=str(i), reason="unknown delivery")
                for i in delivery_ids
                if i not in found
            ]
            requests = [
                self._resend(actor, reseller, endpoint_id=endpoint, message_ids=tuple(ids))
                for (reseller, endpoint), ids in groups.items()
            ]
        elif reseller_id:
            skipped, requests = [], [self._resend(actor, reseller_id, only_failed=only_failed)]
        else:
            raise CommandRefused("select deliveries or a reseller to resend")
        await self.bus.emit_many(requests)
        return Requested(
            action="resend",
            event_ids=tuple(e.id for e in requests),
            subjects=tuple(e.subject for e in requests),
            skipped=tuple(skipped),
        )

    def _resend(self, actor: str, reseller_id: str, **fields: Any) -> WebhookResendRequested:
        return WebhookResendRequested.create(
            producer=PRODUCER,
            time=self.clock.now(),
            reseller_id=reseller_id,
            ref=new_ref(),  # per request: two endpoints of one reseller must not share an id
            requested_by=actor,
            **fields,
        )
