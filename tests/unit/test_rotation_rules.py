from datetime import UTC, date, datetime, time, timedelta

import pytest

from infra.settings import RotationSettings
from policies.rotation import (
    RotationPolicy,
    decide,
    due_slot,
    next_daily_at,
    next_rotation_at,
    retry_at,
    retry_ref,
    rotation_key,
    rotation_ref,
    slot,
    spread_offset,
)
from sandbox.helix_world import make_iccid

D = date(2026, 2, 4)
FLEET = [make_iccid(i) for i in range(2000)]


def at(hour: int, minute: int = 0, day: date = D) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def policy(retry_delay_s: float = 600.0, max_attempts: int = 4) -> RotationPolicy:
    return RotationPolicy(
        spread_s=1800.0,
        min_number_age_s=3600.0,
        retry_delay_s=retry_delay_s,
        max_attempts=max_attempts,
    )


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(4, 59), at(5)),
        (at(5), at(5, day=D + timedelta(days=1))),  # strictly after
        (at(5, 1), at(5, day=D + timedelta(days=1))),
        (at(23, 59), at(5, day=D + timedelta(days=1))),
        (at(0), at(5)),
        (datetime(2026, 2, 4, 6, 0, tzinfo=UTC).astimezone(), at(5, day=D + timedelta(days=1))),
    ],
)
def test_next_05_00_utc(now: datetime, expected: datetime) -> None:
    assert next_daily_at(now) == expected


def test_next_daily_at_another_configured_time() -> None:
    assert next_daily_at(at(12), time(13, 30)) == at(13, 30)


def test_the_spread_offset_is_stable_and_inside_the_window() -> None:
    offsets = [spread_offset(i, 1800) for i in FLEET]
    assert offsets == [spread_offset(i, 1800) for i in FLEET]
    assert all(timedelta(0) <= o < timedelta(seconds=1800) for o in offsets)
    assert spread_offset(FLEET[0], 0) == timedelta(0)


def test_the_spread_covers_the_window_evenly() -> None:
    minutes = [int(spread_offset(i, 1800).total_seconds() // 60) for i in FLEET]
    per_minute = [minutes.count(m) for m in range(30)]
    assert min(per_minute) > 2000 / 30 * 0.6
    assert max(per_minute) < 2000 / 30 * 1.4


def test_a_slot_belongs_to_its_day_and_names_the_ref() -> None:
    s = slot(FLEET[0], D, policy())
    assert at(5) <= s.at < at(5, 30)
    assert s.ref == "rotation:2026-02-04" == rotation_ref(D)


def test_a_sim_is_due_from_its_slot_until_the_next_one() -> None:
    iccid, p = FLEET[1], policy()
    s = slot(iccid, D, p).at
    old = at(1, day=D - timedelta(days=1))
    assert due_slot(iccid, old, s - timedelta(seconds=1), p) == slot(
        iccid, D - timedelta(days=1), p
    )
    assert due_slot(iccid, old, s, p) == slot(iccid, D, p)
    assert due_slot(iccid, old, at(23), p) == slot(iccid, D, p)


def test_a_number_younger_than_the_minimum_age_waits_for_the_next_day() -> None:
    iccid, p = FLEET[2], policy()
    s = slot(iccid, D, p).at
    assert due_slot(iccid, s - timedelta(minutes=59), s + timedelta(minutes=1), p) is None
    assert due_slot(iccid, s - timedelta(minutes=61), s + timedelta(minutes=1), p) is not None
    assert due_slot(iccid, None, s, p) is not None  # age unknown: rotate


def test_a_rotated_number_is_not_due_again_the_same_day() -> None:
    iccid, p = FLEET[3], policy()
    s = slot(iccid, D, p).at
    assert due_slot(iccid, s + timedelta(seconds=5), at(23), p) is None


def test_a_spread_past_midnight_stays_with_its_day() -> None:
    iccid = next(i for i in FLEET if spread_offset(i, 3600) > timedelta(minutes=40))
    p = RotationPolicy(at=time(23, 30), spread_s=3600, min_number_age_s=0)
    s = slot(iccid, D, p)
    assert s.at.date() == D + timedelta(days=1)
    found = due_slot(iccid, None, s.at + timedelta(seconds=1), p)
    assert found is not None
    assert found.ref == "rotation:2026-02-04"


def test_online_until_is_the_next_slot_the_number_will_rotate_at() -> None:
    iccid, p = FLEET[4], policy()
    s = slot(iccid, D, p).at
    tomorrow = slot(iccid, D + timedelta(days=1), p).at
    assert next_rotation_at(iccid, at(1), at(2), p) == s
    # assigned too close to today's slot: it rotates (and is online until) tomorrow
    assert (
        next_rotation_at(iccid, s - timedelta(minutes=30), s - timedelta(minutes=29), p) == tomorrow
    )
    assert next_rotation_at(iccid, None, s, p) == tomorrow


def test_the_policy_comes_from_settings() -> None:
    s = RotationSettings(at=time(6, 15), spread_s=60, min_number_age_s=0, max_attempts=2)
    assert RotationPolicy.from_settings(s) == RotationPolicy(time(6, 15), 60, 0, 600, 2)


def test_a_days_retries_share_its_key_and_operator_refs_are_their_own() -> None:
    assert rotation_key("rotation:2026-02-04") == "rotation:2026-02-04"
    assert rotation_key(retry_ref("rotation:2026-02-04", 3)) == "rotation:2026-02-04"
    assert retry_ref("rotation:2026-02-04", 3) == "rotation:2026-02-04:retry-3"
    assert rotation_key("3f2a9c") == "3f2a9c"


def test_retries_wait_longer_each_time_then_stop() -> None:
    p = policy(retry_delay_s=600, max_attempts=3)
    failed = at(5)
    assert retry_at(1, failed, p) == failed + timedelta(minutes=10)
    assert retry_at(2, failed, p) == failed + timedelta(minutes=20)
    assert retry_at(3, failed, p) is None


@pytest.mark.parametrize(
    ("state", "acted", "has_outcome", "expected"),
    [
        ("requested", "r1", False, "act"),
        ("changed", "r1", True, "replay"),  # the same request redelivered
        ("changed", "r0", True, "refuse"),  # a second change for the key
        ("changing", "r0", False, "recover"),
        ("changing", "r1", False, "recover"),
        ("failed", "r1", True, "replay"),
        ("failed", "r0", True, "act"),  # a retry is a new request
    ],
)
def test_what_a_rotation_request_may_do(
    state: str, acted: str, has_outcome: bool, expected: str
) -> None:
    assert decide(state, acted, "r1", has_outcome=has_outcome) == expected
