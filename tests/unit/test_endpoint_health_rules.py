"""Endpoint health as a fold of delivery outcomes: failing after N failures in a row, recovered
on a success, disabled after failing for the configured period, blocked attempts ignored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consumers.webhooks.endpoint_health_rules import (
    ENDPOINT_BLOCKED,
    Health,
    HealthPolicy,
    Transition,
    after_failure,
    after_success,
    overdue,
    reset,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = HealthPolicy(failing_after=3, disable_after=timedelta(days=3))


def fail(h: Health, at: datetime, error: str = "HTTP 503") -> tuple[Health, list[Transition]]:
    return after_failure(h, "m", at, error=error, status_code=503, policy=POLICY)


def test_failures_in_a_row_make_it_failing_once_and_a_success_recovers_it() -> None:
    h = Health("ep", "acme")
    seen = []
    for i in range(5):
        h, t = fail(h, T0 + timedelta(minutes=i))
        seen += t
    assert seen == [Transition.FAILING]
    assert h.state == "failing"
    assert h.failing_since == T0
    assert h.failures == 5
    h, t = after_success(h, "ok", T0 + timedelta(hours=1))
    assert t == [Transition.RECOVERED]
    assert (h.state, h.failures, h.failing_since) == ("healthy", 0, None)


def test_a_success_between_failures_restarts_the_count() -> None:
    h = Health("ep", "acme")
    h, _ = fail(h, T0)
    h, _ = fail(h, T0)
    h, t = after_success(h, "ok", T0)
    assert t == []
    h, t = fail(h, T0 + timedelta(seconds=1))
    assert (h.state, h.failures, t) == ("healthy", 1, [])


def test_failing_for_the_whole_period_disables_and_then_nothing_moves_it() -> None:
    h = Health("ep", "acme")
    for i in range(3):
        h, _ = fail(h, T0 + timedelta(seconds=i))
    h, t = fail(h, T0 + timedelta(days=3) - timedelta(seconds=1))
    assert (h.state, t) == ("failing", [])
    assert not overdue(h, T0 + timedelta(days=2), POLICY)
    assert overdue(h, T0 + timedelta(days=3), POLICY)
    h, t = fail(h, T0 + timedelta(days=3))
    assert (h.state, t) == ("disabled", [Transition.DISABLED])
    h, t = after_success(h, "late", T0 + timedelta(days=3, seconds=1))
    assert (h.state, t) == ("disabled", [])
    assert reset(h) == Health("ep", "acme")


def test_attempts_refused_because_the_endpoint_was_disabled_are_not_its_failures() -> None:
    h = Health("ep", "acme")
    for _ in range(10):
        h, t = fail(h, T0, error=ENDPOINT_BLOCKED)
        assert t == []
    assert h == Health("ep", "acme")
