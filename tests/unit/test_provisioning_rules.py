from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from consumers.provisioning_rules import (
    INTERRUPTED,
    activation_failure,
    already_in_state,
    drifted,
    finalization,
    finalize_outcome,
    number_poll_delays,
    sync_ref,
)
from events.sim import NumberAssigned, SimActivationFailed, StatusAction
from infra.helix.errors import HelixOutcomeUnknown, HelixRejected, HelixUnavailable
from infra.helix.models import SubscriberDetails
from sandbox.helix_world import make_iccid

NOW = datetime(2026, 2, 4, 12, 30, tzinfo=UTC)
ALREADY = HelixRejected("400", 400, "ICCID 89 already has an active subscription")


def details(**fields: object) -> SubscriberDetails:
    return SubscriberDetails.model_validate({"mobilitySubscriptionId": "38100", **fields})


def test_activation_failures_are_final_unless_the_carrier_was_unavailable() -> None:
    assert activation_failure(HelixRejected("400", 400, "Invalid IMEI"), retried=False) == (
        "Invalid IMEI",
        False,
    )
    assert activation_failure(HelixUnavailable("Helix answered 503"), retried=True) == (
        "Helix answered 503",
        True,
    )
    reason, retryable = activation_failure(HelixOutcomeUnknown("lost answer"), retried=False)
    assert reason.startswith("outcome unknown")
    assert not retryable


def test_already_active_after_an_earlier_attempt_is_an_unknown_outcome() -> None:
    assert activation_failure(ALREADY, retried=False) == (ALREADY.reason, False)
    assert activation_failure(ALREADY, retried=True) == (INTERRUPTED, False)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"phoneNumber": "6465550001", "status": "ACTIVE"}, "assign"),
        ({"phoneNumber": None, "status": "ACTIVE"}, "wait"),
        ({"phoneNumber": "", "status": "ACTIVATED"}, "wait"),
        ({"status": "ACTIVATION_FAILED"}, "failed"),
        ({"status": "ACTIVE", "statusReason": "Port-in Timed Out"}, "failed"),
    ],
)
def test_finalization_reads_the_details(fields: dict[str, object], expected: str) -> None:
    assert finalization(details(**fields)) == expected


def test_finalize_outcome_gives_the_same_ids_whoever_computes_it() -> None:
    iccid = make_iccid(1)
    line = details(phoneNumber="6465550001", status="ACTIVE")
    common = {"iccid": iccid, "activation_id": "sim.activated_x", "producer": "p"}

    from_handler = finalize_outcome(line, correlationid="c1", now=NOW, **common)
    from_sweep = finalize_outcome(line, correlationid="c2", now=NOW + timedelta(hours=1), **common)
    failed = finalize_outcome(
        details(status="ACTIVATION_FAILED"), correlationid="c", now=NOW, **common
    )
    waiting = finalize_outcome(details(status="ACTIVE"), correlationid="c", now=NOW, **common)

    assert isinstance(from_handler, NumberAssigned)
    assert from_sweep is not None
    assert from_handler.id == from_sweep.id
    assert (from_handler.data.number, from_handler.data.source) == ("+16465550001", "activation")
    assert from_handler.data.request_id == "sim.activated_x"
    assert isinstance(failed, SimActivationFailed)
    assert not failed.data.retryable
    assert waiting is None


def test_number_poll_delays_double_within_the_wait() -> None:
    assert number_poll_delays(10.0, 0.5) == [0.5, 1.0, 2.0, 4.0]
    assert number_poll_delays(20.0, 0.5, cap_s=4.0) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert number_poll_delays(0.0, 0.5) == []
    assert sum(number_poll_delays(3.0, 0.25)) <= 3.0


@pytest.mark.parametrize(
    ("action", "status", "done"),
    [
        ("cancel", "CANCELED", True),
        ("cancel", "ACTIVE", False),
        ("suspend", "SUSPENDED", True),
        ("suspend", "ACTIVE", False),
        ("restore", "ACTIVE", True),
        ("restore", "SUSPENDED", False),
    ],
)
def test_a_line_already_in_the_requested_state_counts_as_done(
    action: StatusAction, status: str, done: bool
) -> None:
    assert already_in_state(action, details(status=status)) is done


def test_drift_is_a_different_number_reported_by_the_carrier() -> None:
    assert drifted("+16465550001", "+19175550123")
    assert drifted(None, "+19175550123")
    assert not drifted("+16465550001", "+16465550001")
    assert not drifted("+16465550001", None)


def test_sync_refs_are_per_hour_in_utc() -> None:
    eastern = timezone(timedelta(hours=-5))
    assert sync_ref(NOW) == "sync:2026-02-04T12"
    assert sync_ref(NOW + timedelta(minutes=29)) == sync_ref(NOW)
    assert sync_ref(NOW + timedelta(minutes=30)) == "sync:2026-02-04T13"
    assert sync_ref(datetime(2026, 2, 4, 7, 45, tzinfo=eastern)) == "sync:2026-02-04T12"
