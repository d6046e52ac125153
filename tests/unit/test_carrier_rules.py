"""Pure rules behind carrier drift, request retries and the rotation day."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from consumers.activation import already_active
from consumers.carrier_retries import RequestRetries, retry_ref
from consumers.provisioning_rules import status_drift
from infra.helix.errors import HelixOutcomeUnknown, HelixRejected, HelixUnavailable
from infra.helix.models import SubscriberDetails
from policies.rotation import RotationPolicy, current_day

NOW = datetime(2026, 2, 4, 12, 30, tzinfo=UTC)


def carrier(status: str) -> SubscriberDetails:
    return SubscriberDetails.model_validate({"mobilitySubscriptionId": "1", "status": status})


@pytest.mark.parametrize(
    ("ours", "theirs", "drift"),
    [
        ("active", "CANCELED", "cancelled"),
        ("suspended", "CANCELED", "cancelled"),
        ("error", "CANCELED", "cancelled"),
        ("cancelled", "CANCELED", None),
        ("active", "SUSPENDED", "suspended"),
        ("provisioning", "SUSPENDED", "suspended"),
        ("suspended", "SUSPENDED", None),
        ("suspended", "ACTIVE", "restored"),
        ("active", "ACTIVE", None),
        ("active", "ACTIVATED", None),
    ],
)
def test_the_carriers_status_against_ours(ours: str, theirs: str, drift: str | None) -> None:
    assert status_drift(ours, carrier(theirs)) == drift


def test_request_retries_double_then_give_up() -> None:
    policy = RequestRetries(delay_s=60, max_attempts=3)
    assert policy.next_at(1, NOW) == NOW + timedelta(seconds=60)
    assert policy.next_at(2, NOW) == NOW + timedelta(seconds=120)
    assert policy.next_at(3, NOW) is None


def test_a_retry_ref_names_the_first_request_and_the_attempt() -> None:
    assert retry_ref("csv:sims.csv:12", 2) == "csv:sims.csv:12:retry-2"
    assert retry_ref("csv:sims.csv:12:retry-2", 3) == "csv:sims.csv:12:retry-3"


def test_already_active_is_the_carriers_duplicate_or_a_lost_answer() -> None:
    assert already_active(HelixRejected("400", 400, "ICCID 8 already has an active subscription"))
    assert already_active(HelixOutcomeUnknown("lost"))
    assert not already_active(HelixRejected("400", 400, "Address verification failed"))
    assert not already_active(HelixUnavailable("503"))


def test_the_rotation_day_under_way_starts_at_the_rotation_time() -> None:
    policy = RotationPolicy(at=time(5, 0))
    assert current_day(datetime(2026, 2, 4, 5, 0, tzinfo=UTC), policy) == date(2026, 2, 4)
    assert current_day(datetime(2026, 2, 4, 4, 59, tzinfo=UTC), policy) == date(2026, 2, 3)
