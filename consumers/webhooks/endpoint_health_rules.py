"""Pure decisions of endpoint health: how delivery outcomes move an endpoint between
``healthy``, ``failing`` and ``disabled``.

- ``failing``: ``failing_after`` attempts in a row failed (any delivery, no success between);
- ``healthy`` again (``recovered``): the next success;
- ``disabled``: still failing ``disable_after`` after the first failure of the streak (410 Gone
  disables at once, decided by the webhook flow). Only an operator enables it again.

Attempts refused because the endpoint was already removed or disabled are not the endpoint's
failures and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from infra.settings import WebhookSettings

# the error of an attempt not made (endpoint removed or disabled meanwhile); see webhooks.attempts
ENDPOINT_BLOCKED = "endpoint removed or disabled"


class Transition(StrEnum):
    FAILING = "failing"
    RECOVERED = "recovered"
    DISABLED = "disabled"


@dataclass(frozen=True)
class HealthPolicy:
    failing_after: int
    disable_after: timedelta

    @classmethod
    def from_settings(cls, settings: WebhookSettings) -> HealthPolicy:
        return cls(settings.failing_after, timedelta(seconds=settings.disable_after_s))


@dataclass(frozen=True)
class Health:
    endpoint_id: str
    reseller_id: str
    state: str = "healthy"
    failures: int = 0
    failing_since: datetime | None = None
    last_failure_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_status_code: int | None = None
    last_message_id: str | None = None


def after_success(health: Health, message_id: str, at: datetime) -> tuple[Health, list[Transition]]:
    if health.state == "disabled":  # a late answer does not undo the operator's notice
        return replace(health, last_success_at=at), []
    recovered = [Transition.RECOVERED] if health.state == "failing" else []
    healed = replace(
        health, state="healthy", failures=0, failing_since=None, last_success_at=at,
        last_message_id=message_id,
    )  # fmt: skip
    return healed, recovered


def after_failure(
    health: Health,
    message_id: str,
    at: datetime,
    *,
    error: str,
    status_code: int | None,
    policy: HealthPolicy,
) -> tuple[Health, list[Transition]]:
    if health.state == "disabled" or error == ENDPOINT_BLOCKED:
        return health, []
    failed = replace(
        health, failures=health.failures + 1, failing_since=health.failing_since or at,
        last_failure_at=at, last_error=error, last_status_code=status_code,
        last_message_id=message_id,
    )  # fmt: skip
    transitions = []
    if failed.state == "healthy" and failed.failures >= policy.failing_after:
        failed, transitions = replace(failed, state="failing"), [Transition.FAILING]
    if overdue(failed, at, policy):
        failed = replace(failed, state="disabled")
        transitions.append(Transition.DISABLED)
    return failed, transitions


def overdue(health: Health, now: datetime, policy: HealthPolicy) -> bool:
    """Failing everything for ``disable_after``: to be disabled (also checked by the clock, for
    an endpoint whose failures stopped arriving)."""
    return (
        health.state == "failing"
        and health.failing_since is not None
        and now - health.failing_since >= policy.disable_after
    )


def disabled(health: Health) -> Health:
    return replace(health, state="disabled")


def reset(health: Health) -> Health:
    """Added again or re-enabled: a fresh start."""
    return Health(health.endpoint_id, health.reseller_id)
