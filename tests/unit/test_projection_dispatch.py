"""Each projection that tells its topics' types apart reads every type they carry (listed by
``events.topics``, never by hand) without raising: each dispatches with ``match`` over the
topics' unions and ``assert_never``, so a type added to a topic fails the type check until the
projection handles it, and this test shows what each does with every type that is there now."""

from __future__ import annotations

from typing import Any, cast

from events.envelope import Event
from events.reseller import ResellerRegistryEvent, ResellerTokenUsed
from events.sim import (
    SimCancelRequested,
    SimLifecycleEvent,
    SimResellerAssigned,
    SimRestoreRequested,
    SimSuspendRequested,
    SyncRequested,
    VerificationRequested,
)
from events.sms import SmsReceived
from events.topics import SIM_LIFECYCLE, Topic
from events.webhook import WebhookDeliveryEvent
from projections import audit, deliveries, gateways, reseller_tokens, resellers, sims
from projections import sms as inbound_sms
from projections.sim_families import SIM_OUTCOMES, SIM_REQUESTS
from tests.support.event_examples import example


def every_type(*topics: Topic) -> list[Event]:
    events = [example(cls, n) for t in topics for n, cls in enumerate(t.members)]
    assert events, "a projection reads at least one type"
    return events


def test_sims_has_a_statement_or_a_deliberate_none_for_every_type() -> None:
    events = every_type(*sims.SimsProjection.topics)
    changes = {e.type: sims.statement(cast(SimLifecycleEvent, e)) for e in events}
    ignored = {t for t, change in changes.items() if change is None}
    requests = (
        SimCancelRequested,
        SimSuspendRequested,
        SimRestoreRequested,
        SyncRequested,
        VerificationRequested,
    )
    assert ignored == {cls.event_type() for cls in requests}


def test_gateways_learns_from_status_reports_and_sms_pushes_only() -> None:
    events = every_type(*gateways.GatewaysProjection.topics)
    seen = gateways.sightings(cast(gateways.GatewayTopicsEvent, e) for e in events)
    # the status report (one port) and the SMS push (its port) name the same placeholder port
    assert set(seen.gateways) == {"x"}
    assert set(seen.ports) == {("x", "x")}


def test_deliveries_has_a_row_status_for_every_type() -> None:
    events = every_type(*deliveries.DeliveriesProjection.topics)
    statuses = {deliveries.row_status(cast(WebhookDeliveryEvent, e)) for e in events}
    assert statuses == {"delivered", "retrying"}  # the placeholder failure is not final


def test_inbound_sms_keeps_a_row_of_a_received_sms_only() -> None:
    events = every_type(*inbound_sms.InboundSmsProjection.topics)
    kept = {e.type: inbound_sms.InboundSmsProjection().compact(e) for e in events}
    assert {t for t, row in kept.items() if row is not None} == {SmsReceived.event_type()}
    assert all(row is None or row[0] for row in kept.values())  # keyed by the message id


def test_audit_has_entries_only_for_requests() -> None:
    events = every_type(*audit.OperatorAuditProjection.topics)
    audited = {
        e.type
        for e in events
        if audit.entries_of(cast(audit.AuditedTopicsEvent, operator_asked(e)))
    }
    assert audited == {cls.event_type() for cls in audit.ACTIONS}


def operator_asked(event: Event) -> Event:
    """The example as an operator's request: the audit records no system request."""
    data = cast(Any, event.data)
    if "requested_by" not in type(data).model_fields:
        return event
    return event.model_copy(update={"data": data.model_copy(update={"requested_by": "ana"})})


def test_resellers_reads_the_registry_and_the_assignments() -> None:
    events = every_type(*resellers.ResellersProjection.topics)
    read = {e.type for e in events if resellers.read(cast(resellers.ResellersTopicsEvent, e))}
    assert read == {
        "reseller.created",
        "webhook.endpoint_added",
        "webhook.endpoint_removed",
        "webhook.secret_rotated",
        "webhook.endpoint_disabled",
        "webhook.endpoint_enabled",
        "webhook.endpoint_failing",
        "webhook.endpoint_recovered",
        "sim.reseller_assigned",
    }


def test_reseller_tokens_reads_issues_and_revocations() -> None:
    events = every_type(*reseller_tokens.ResellerTokensProjection.topics)
    read = {
        e.type
        for e in events
        if reseller_tokens.statement(cast(ResellerRegistryEvent, e)) is not None
    }
    assert read == {"reseller.token_issued", "reseller.token_revoked"}


def test_a_token_use_is_audited_once_per_path() -> None:
    (used,) = every_type(*audit.OperatorAuditProjection.topics[2:])
    assert isinstance(used, ResellerTokenUsed)
    assert len(audit.entries_of(used)) == len(used.data.uses)


def test_every_sim_lifecycle_type_is_a_request_an_outcome_or_the_assignment() -> None:
    # once each: a family's isinstance guard decides for the projections that use it
    families = [*SIM_REQUESTS, *SIM_OUTCOMES, SimResellerAssigned]
    assert sorted(c.event_type() for c in families) == sorted(SIM_LIFECYCLE.types)
