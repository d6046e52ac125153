"""Which operator requests a SIM accepts: the pure rule behind every dashboard control."""

from __future__ import annotations

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
    "finalize": {"provisioning"},
    "rotate": {"active"},
    "sync": {"provisioning", "active", "suspended"},
    "cancel": {"pending", "provisioning", "active", "suspended", "error"},
    "suspend": {"active"},
    "restore": {"suspended"},
    "verify": {"active"},
}


@pytest.mark.parametrize("action", SIM_ACTIONS)
def test_each_action_accepts_exactly_its_statuses(action: SimAction) -> None:
    statuses = ("pending", "provisioning", "active", "suspended", "canceled", "error")
    accepted = {s for s in statuses if refusal(action, sim(s)) is None}
    assert accepted == ACCEPTED[action]


def test_the_facts_an_action_needs_are_checked_too() -> None:
    assert refusal("activate", sim("pending", imei=None)) == "no IMEI on record"
    assert refusal("rotate", sim("active", mobility_subscription_id=None)) is not None
    assert refusal("sync", sim("active", mobility_subscription_id=None)) is not None
    assert refusal("verify", sim("active", current_number=None)) == "no current number"
    assert refusal("finalize", sim("active", current_number=None)) is None
