"""What the operator audit records of each request: the pure half of ``projections.audit``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events.envelope import Event
from events.reseller import WebhookEndpointRemoved, WebhookSecretRotated
from events.sim import (
    MdnChangeRequested,
    NumberOnline,
    SimActivationRequested,
    SimCancelRequested,
    SimResellerAssigned,
    SyncRequested,
)
from projections.audit import audit_entry, group_commands

AT = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
ICCIDS = ("8901260000000000017", "8901260000000000025")
IMEI = "356938035643809"


def cancel(iccid: str, ref: str = "click-1", at: datetime = AT) -> Event:
    return SimCancelRequested.create(
        producer="simfleet/commands",
        time=at,
        iccid=iccid,
        ref=ref,
        requested_by="dashboard:alice",
        reason="lost in transit",
    )


def test_a_dashboard_cancel_names_actor_channel_reason_and_sim() -> None:
    entry = audit_entry(cancel(ICCIDS[0]))

    assert entry is not None
    assert (entry.action, entry.actor, entry.channel) == ("cancel", "dashboard:alice", "dashboard")
    assert (entry.reason, entry.subject, entry.command_id) == (
        "lost in transit",
        ICCIDS[0],
        "click-1",
    )


def test_what_nobody_asked_for_is_not_audited() -> None:
    tick = MdnChangeRequested.create(
        producer="simfleet/scheduler", time=AT, iccid=ICCIDS[0], ref="rotation:2025-06-02"
    )
    online = NumberOnline.create(
        producer="simfleet/verification",
        time=AT,
        iccid=ICCIDS[0],
        request_id="x",
        number="+15550100001",
    )
    assert tick.data.requested_by == "system"
    assert audit_entry(tick) is None
    assert audit_entry(online) is None


def test_an_import_is_one_command_whatever_its_per_row_refs() -> None:
    fields = {"ref": f"import:{ICCIDS[0]}", "requested_by": "cli:bob", "command": "import:abc"}
    request = SimActivationRequested.create(
        producer="simfleet/bulk_import", time=AT, iccid=ICCIDS[0], imei=IMEI, **fields
    )
    assigned = SimResellerAssigned.create(
        producer="simfleet/bulk_import", time=AT, iccid=ICCIDS[0], reseller_id="acme", **fields
    )

    entries = [audit_entry(request), audit_entry(assigned)]

    assert all(e is not None and e.action == "import" for e in entries)
    assert {e.command_id for e in entries if e} == {"import:abc"}
    [command] = group_commands([e for e in entries if e])
    assert (command.subjects, command.events, command.target) == ({ICCIDS[0]}, 2, "acme")


def test_the_actor_is_not_part_of_the_request_identity() -> None:
    fields = {"iccid": ICCIDS[0], "imei": IMEI, "ref": f"import:{ICCIDS[0]}"}
    by_alice = SimActivationRequested.create(
        producer="p", time=AT, requested_by="dashboard:alice", **fields
    )
    by_bob = SimActivationRequested.create(producer="p", time=AT, requested_by="cli:bob", **fields)
    assert by_alice.id == by_bob.id


def test_finalize_and_registry_commands_read_as_their_buttons() -> None:
    finalize = SyncRequested.create(
        producer="p", time=AT, iccid=ICCIDS[0], ref="finalize:r1", requested_by="api:alice"
    )
    removed = WebhookEndpointRemoved.create(
        producer="p",
        time=AT,
        reseller_id="acme",
        endpoint_id="ep-1",
        ref="r2",
        requested_by="cli:bob",
        reason="reseller left",
    )
    rotated = WebhookSecretRotated.create(
        producer="p",
        time=AT,
        reseller_id="acme",
        endpoint_id="ep-1",
        sealed_secret="gAAAA-sealed",
        previous_valid_until=AT,
        ref="r3",
        requested_by="run:X",
    )
    entries = [audit_entry(e) for e in (finalize, removed, rotated)]
    assert [(e.action, e.subject, e.target) for e in entries if e] == [
        ("finalize", ICCIDS[0], None),
        ("remove-endpoint", "acme", "ep-1"),
        ("rotate-secret", "acme", "ep-1"),
    ]


def test_a_batch_folds_per_command_with_the_earliest_time_and_distinct_sims() -> None:
    later = AT + timedelta(seconds=3)
    entries = [
        audit_entry(e)
        for e in (cancel(ICCIDS[1], at=later), cancel(ICCIDS[0]), cancel(ICCIDS[0], ref="click-2"))
    ]

    first, second = group_commands([e for e in entries if e])

    assert (first.first.command_id, first.at, first.subjects, first.events) == (
        "click-1",
        AT,
        set(ICCIDS),
        2,
    )
    assert (second.first.command_id, second.subjects) == ("click-2", {ICCIDS[0]})


def test_re_enabling_an_endpoint_is_audited_with_its_endpoint_as_target() -> None:
    from events.reseller import WebhookEndpointEnabled

    enabled = WebhookEndpointEnabled.create(
        producer="simfleet/resellers",
        time=AT,
        reseller_id="acme",
        endpoint_id="ep_1",
        ref="click-9",
        requested_by="cli:ops",
    )
    entry = audit_entry(enabled)

    assert entry is not None
    assert (entry.action, entry.actor, entry.target) == ("enable-endpoint", "cli:ops", "ep_1")
