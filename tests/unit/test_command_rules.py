"""Which operator requests a SIM accepts: the pure rule behind every dashboard control."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from producers.commands import SIM_ACTIONS, SimAction, refusal
from projections.sim_target_queries import SimTarget


def sim(status: str, **fields: str | None) -> SimTarget:
    values: dict[str, str | None] = {
        "iccid": "8901260000000000017",
        "imei": "356938035643809",
        "current_number": "+15550100001",
        "mobility_subscription_id": "SUB-1",
        "reseller_id": None,
        "gateway_id": None,
        "port": None,
    }
    return SimTarget.model_validate({**values, **fields, "status": status})


ACCEPTED: dict[SimAction, set[str]] = {
    "activate": {"pending", "error"},
    "finalize": {"provisioning", "error"},
    "rotate": {"active"},
    "sync": {"provisioning", "active", "suspended", "error"},
    "cancel": {"pending", "provisioning", "active", "suspended", "error"},
    "suspend": {"active"},
    "restore": {"suspended"},
    "verify": {"active"},
}


@pytest.mark.parametrize("action", SIM_ACTIONS)
def test_each_action_accepts_exactly_its_statuses(action: SimAction) -> None:
    statuses = ("pending", "provisioning", "active", "suspended", "cancelled", "error")
    accepted = {s for s in statuses if refusal(action, sim(s)) is None}
    assert accepted == ACCEPTED[action]


def test_the_facts_an_action_needs_are_checked_too() -> None:
    assert refusal("activate", sim("pending", imei=None)) == "no IMEI on record"
    assert refusal("rotate", sim("active", mobility_subscription_id=None)) is not None
    assert refusal("sync", sim("active", mobility_subscription_id=None)) is not None
    assert refusal("verify", sim("active", current_number=None)) == "no current number"
    assert refusal("finalize", sim("active", current_number=None)) is None


def test_an_error_sim_is_synced_without_a_subscription_id() -> None:
    # found at the carrier by its ICCID: "already active" left it without one
    assert refusal("sync", sim("error", mobility_subscription_id=None)) is None
    assert refusal("finalize", sim("error", mobility_subscription_id=None)) is None


def test_an_activation_queued_or_in_flight_is_not_requested_again() -> None:
    asked = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    waiting = SimTarget.model_validate(
        {**sim("pending").model_dump(), "activation_requested_at": asked}
    )
    assert "queued or in flight" in (refusal("activate", waiting) or "")
    before = asked - timedelta(minutes=1)
    assert "queued or in flight" in (refusal("activate", waiting, stale_before=before) or "")
    # a request with no outcome for longer than HX_REQUEST_STALE_S no longer blocks
    assert refusal("activate", waiting, stale_before=asked + timedelta(seconds=1)) is None
