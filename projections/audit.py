"""Operator audit: operator requests → ``operator_audit`` + ``operator_audit_events``.

Reads topics ``sim.lifecycle``, ``reseller.registry`` and ``reseller.usage``: every request an
operator made (``requested_by`` other than ``system``, see ``infra.actors``) through the
dashboard, the JSON API, ``/api/run/*`` or the CLI, every change a reseller made through its API
or portal (``reseller:<id>/<token name>``), and every use of a reseller's token
(``reseller.token_used``: one row per batch and path, action ``use-token``, the method and path
as its ``target``, the requests as its ``events``). One row per command and action — who (actor,
channel), what, when, why (the reason) and to which SIMs (``subjects``: ICCIDs; reseller ids for the
registry's commands, whose endpoint is the ``target``). A command is the request's ``command``
field where it has one (an import, an assignment: their refs are per SIM), else its ``ref``
(one per dashboard click, API call or run), else the event itself.

``operator_audit_events`` makes the counts exact: an event counts once per command however
often it is delivered or re-published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import assert_never, cast

import asyncpg

from events.envelope import Event
from events.reseller import (
    ResellerCreated,
    ResellerRegistryEvent,
    ResellerTokenIssued,
    ResellerTokenRevoked,
    ResellerTokenUsed,
    WebhookEndpointAdded,
    WebhookEndpointDisabled,
    WebhookEndpointEnabled,
    WebhookEndpointFailing,
    WebhookEndpointRecovered,
    WebhookEndpointRemoved,
    WebhookResendRequested,
    WebhookSecretRotated,
)
from events.sim import (
    MdnChangeRequested,
    SimActivationRequested,
    SimCancelRequested,
    SimLifecycleEvent,
    SimRequest,
    SimResellerAssigned,
    SimRestoreRequested,
    SimSuspendRequested,
    SyncRequested,
    VerificationRequested,
)
from events.topics import RESELLER_REGISTRY, RESELLER_USAGE, SIM_LIFECYCLE, Topic
from infra.actors import channel_of, is_operator
from projections.batches import Record
from projections.sim_families import SIM_OUTCOMES, SIM_REQUESTS

# the action names read as the dashboard's buttons and the CLI's commands
ACTIONS: dict[type[Event], str] = {
    SimActivationRequested: "activate",
    MdnChangeRequested: "rotate",
    SyncRequested: "sync",
    SimCancelRequested: "cancel",
    SimSuspendRequested: "suspend",
    SimRestoreRequested: "restore",
    VerificationRequested: "verify",
    SimResellerAssigned: "assign",
    ResellerCreated: "create-reseller",
    WebhookEndpointAdded: "add-endpoint",
    WebhookEndpointRemoved: "remove-endpoint",
    WebhookEndpointEnabled: "enable-endpoint",
    WebhookSecretRotated: "rotate-secret",
    WebhookResendRequested: "resend",
    WebhookEndpointDisabled: "pause-endpoint",  # only a requested one: the health rules' are system
    ResellerTokenIssued: "issue-token",
    ResellerTokenRevoked: "revoke-token",
    ResellerTokenUsed: "use-token",
}

CLAIM_EVENTS = """
INSERT INTO operator_audit_events (event_id, command_id)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT DO NOTHING
RETURNING event_id, command_id
"""
UPSERT_COMMAND = """
INSERT INTO operator_audit AS a (command_id, action, actor, channel, requested_at, reason,
                                 target, subjects, events)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[], $9)
ON CONFLICT (command_id, action) DO UPDATE SET
    requested_at = LEAST(a.requested_at, EXCLUDED.requested_at),
    reason = COALESCE(a.reason, EXCLUDED.reason),
    target = COALESCE(a.target, EXCLUDED.target),
    subjects = ARRAY(SELECT DISTINCT s FROM unnest(a.subjects || EXCLUDED.subjects) s ORDER BY s),
    events = a.events + EXCLUDED.events
"""


@dataclass(frozen=True)
class AuditEntry:
    """One operator request, as the audit records it."""

    event_id: str
    command_id: str
    action: str
    actor: str
    at: datetime
    subject: str
    reason: str | None = None
    target: str | None = None
    count: int = 1  # the requests of a token use; one for every other event

    @property
    def channel(self) -> str:
        return channel_of(self.actor)


def audit_entry(event: Event) -> AuditEntry | None:
    """The audit's view of ``event``; None for what no operator asked for."""
    action = ACTIONS.get(type(event))
    data = event.data
    actor = getattr(data, "requested_by", "system")
    if action is None or not is_operator(actor):
        return None
    ref: str | None = getattr(data, "ref", None)
    command: str | None = getattr(data, "command", None)
    target: str | None = getattr(data, "endpoint_id", None)
    if isinstance(data, SimRequest):
        if ref and ref.startswith("import:"):
            action = "import"
        elif ref and ref.startswith("finalize:"):
            action = "finalize"
    if isinstance(event, SimResellerAssigned):
        target = event.data.reseller_id
    if isinstance(event, ResellerTokenIssued | ResellerTokenRevoked):
        target = event.data.token_id
    return AuditEntry(
        event_id=event.id,
        command_id=command or ref or event.id,
        action=action,
        actor=actor,
        at=event.time,
        subject=event.subject,
        reason=getattr(data, "reason", None),
        target=target,
    )


def use_entries(event: ResellerTokenUsed) -> list[AuditEntry]:
    """A batch of a token's uses: one entry per method and path (``<event id>#<n>``)."""
    data = event.data
    return [
        AuditEntry(
            event_id=event.id,
            command_id=f"{event.id}#{n}",
            action=ACTIONS[ResellerTokenUsed],
            actor=data.requested_by,
            at=use.first_at,
            subject=data.reseller_id,
            target=f"{use.method} {use.path}",
            count=use.requests,
        )
        for n, use in enumerate(data.uses)
    ]


AuditedTopicsEvent = SimLifecycleEvent | ResellerRegistryEvent | ResellerTokenUsed


def entries_of(event: AuditedTopicsEvent) -> list[AuditEntry]:
    """Exhaustive: a new type on any of the three topics fails the type check here."""
    match event:
        case ResellerTokenUsed():
            return use_entries(event)
        case (
            SimResellerAssigned()
            | ResellerCreated()
            | WebhookEndpointAdded()
            | WebhookEndpointRemoved()
            | WebhookEndpointEnabled()
            | WebhookSecretRotated()
            | WebhookResendRequested()
            | WebhookEndpointDisabled()
            | ResellerTokenIssued()
            | ResellerTokenRevoked()
        ):
            return _entries(audit_entry(event))
        case _ if isinstance(event, SIM_REQUESTS):
            return _entries(audit_entry(event))
        case _ if isinstance(event, SIM_OUTCOMES):
            return []  # outcomes the system reports: nobody asked for them
        case WebhookEndpointFailing() | WebhookEndpointRecovered():
            return []  # the endpoint's health, as the dispatcher finds it
        case _:
            assert_never(event)


def _entries(entry: AuditEntry | None) -> list[AuditEntry]:
    return [entry] if entry is not None else []


@dataclass
class _Command:
    first: AuditEntry
    at: datetime
    subjects: set[str]
    events: int = 0
    reason: str | None = None
    target: str | None = None

    def add(self, entry: AuditEntry) -> None:
        self.at = min(self.at, entry.at)
        self.subjects.add(entry.subject)
        self.events += entry.count
        self.reason = self.reason or entry.reason
        self.target = self.target or entry.target


def group_commands(entries: Sequence[AuditEntry]) -> list[_Command]:
    """Entries of one batch folded per (command, action), in first-seen order."""
    commands: dict[tuple[str, str], _Command] = {}
    for entry in entries:
        key = (entry.command_id, entry.action)
        if key not in commands:
            commands[key] = _Command(first=entry, at=entry.at, subjects=set())
        commands[key].add(entry)
    return list(commands.values())


class OperatorAuditProjection:
    name = "operator_audit"
    topics: tuple[Topic, ...] = (SIM_LIFECYCLE, RESELLER_REGISTRY, RESELLER_USAGE)
    tables: tuple[str, ...] = ("operator_audit", "operator_audit_events")

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        # the runner decodes each topic with its own decoder: every event is of its union
        found = (e for r in records for e in entries_of(cast(AuditedTopicsEvent, r.event)))
        # keyed: an event delivered twice in one batch is one entry
        entries = list({(e.event_id, e.command_id): e for e in found if e is not None}.values())
        if not entries:
            return
        claimed = await conn.fetch(
            CLAIM_EVENTS, [e.event_id for e in entries], [e.command_id for e in entries]
        )
        fresh = {(r["event_id"], r["command_id"]) for r in claimed}
        new = [e for e in entries if (e.event_id, e.command_id) in fresh]
        await conn.executemany(
            UPSERT_COMMAND,
            [
                (
                    c.first.command_id,
                    c.first.action,
                    c.first.actor,
                    c.first.channel,
                    c.at,
                    c.reason,
                    c.target,
                    sorted(c.subjects),
                    c.events,
                )
                for c in group_commands(new)
            ],
        )
