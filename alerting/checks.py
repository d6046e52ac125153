"""The operational alert checks: each small, independent, and answering one question — what is
wrong right now, as findings (one incident per check and key), or ``None`` when it could not
measure (then its open incidents stay as they are).

Adding a check is providing one object with a ``name`` and ``findings(now)``; a count measured
elsewhere (silent SIMs) plugs into ``ThresholdCheck`` through a function.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import asyncpg

# an endpoint its reseller paused (producers/portal_commands.py) is no one's trouble
DISABLED_ENDPOINTS = """
SELECT endpoint_id, reseller_id, disabled_reason FROM reseller_webhooks
WHERE NOT enabled AND coalesce(disabled_reason, '') NOT LIKE 'paused by reseller:%'
ORDER BY endpoint_id
"""
VERIFICATION_OUTCOMES = """
SELECT count(*) FILTER (WHERE verification_status = 'failed') AS failed, count(*) AS total
FROM sim_numbers
WHERE verification_status IN ('verified', 'failed')
  AND coalesce(verified_at, failed_at) > $1 AND coalesce(verified_at, failed_at) <= $2
"""
HELIX_OUTCOMES = """
SELECT count(*) FILTER (WHERE NOT ok) AS failed, count(*) AS total
FROM helix_api_logs WHERE called_at > $1 AND called_at <= $2
"""


@dataclass(frozen=True)
class Finding:
    key: str  # one incident per (check, key): an endpoint id, a consumer group, "rate"
    summary: str  # the alert's text: ids, counts and reasons only (never a URL or a secret)


class Check(Protocol):
    @property
    def name(self) -> str: ...

    async def findings(self, now: datetime) -> list[Finding] | None: ...


class DisabledEndpoints:
    """Every disabled webhook endpoint (410 Gone, or failing for too long) until re-enabled;
    not one its reseller paused."""

    name = "endpoint_disabled"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def findings(self, now: datetime) -> list[Finding]:  # noqa: ARG002 - state, not a window
        return [
            Finding(
                r["endpoint_id"],
                f"webhook endpoint {r['endpoint_id']} of reseller {r['reseller_id']} is "
                f"disabled: {r['disabled_reason'] or 'no reason recorded'}",
            )
            for r in await self._pool.fetch(DISABLED_ENDPOINTS)
        ]


Measure = Callable[[datetime], Awaitable[Mapping[str, float] | None]]


@dataclass(frozen=True)
class ThresholdCheck:
    """A measured value per key above ``threshold`` is a finding; ``measure`` returns the values
    (``None``: not measured this round)."""

    name: str
    measure: Measure
    threshold: float
    describe: Callable[[str, float], str]

    async def findings(self, now: datetime) -> list[Finding] | None:
        values = await self.measure(now)
        if values is None:
            return None
        return [
            Finding(key, self.describe(key, value))
            for key, value in sorted(values.items())
            if value > self.threshold
        ]


def failure_rate(pool: asyncpg.Pool, sql: str, window: timedelta, min_samples: int) -> Measure:
    """failed / total over the window before ``now``; nothing when too few outcomes to judge."""

    async def measure(now: datetime) -> Mapping[str, float]:
        row = await pool.fetchrow(sql, now - window, now)
        total = row["total"] if row else 0
        return {"rate": row["failed"] / total} if row and total >= min_samples else {}

    return measure


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def verification_failures(
    pool: asyncpg.Pool, *, window: timedelta, min_samples: int, threshold: float
) -> ThresholdCheck:
    return ThresholdCheck(
        "verification_failure_rate",
        failure_rate(pool, VERIFICATION_OUTCOMES, window, min_samples),
        threshold,
        lambda _key, rate: (
            f"{percent(rate)} of number verifications failed in the last "
            f"{_span(window)} (threshold {percent(threshold)})"
        ),
    )


def helix_errors(
    pool: asyncpg.Pool, *, window: timedelta, min_samples: int, threshold: float
) -> ThresholdCheck:
    return ThresholdCheck(
        "helix_error_rate",
        failure_rate(pool, HELIX_OUTCOMES, window, min_samples),
        threshold,
        lambda _key, rate: (
            f"{percent(rate)} of Helix calls failed in the last {_span(window)} "
            f"(threshold {percent(threshold)})"
        ),
    )


def consumer_lag(measure: Measure, threshold: int) -> ThresholdCheck:
    return ThresholdCheck(
        "consumer_lag",
        measure,
        threshold,
        lambda group, lag: (
            f"consumer group {group} is {lag:.0f} records behind (threshold {threshold})"
        ),
    )


def silent_sims(
    count: Callable[[datetime], Awaitable[int | None]], threshold: int
) -> ThresholdCheck:
    async def measure(now: datetime) -> Mapping[str, float] | None:
        found = await count(now)
        return None if found is None else {"silent": found}

    return ThresholdCheck(
        "silent_sims",
        measure,
        threshold,
        lambda _key, n: (
            f"{n:.0f} online SIMs have received no SMS for too long (threshold {threshold})"
        ),
    )


def _span(window: timedelta) -> str:
    seconds = window.total_seconds()
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min"
