"""The console's periodic summary: what this process did since the last one, in one line.

Per-message lines are DEBUG; at INFO an operator watching the console sees this instead. The
counts are this process's Prometheus counters (``infra.metrics``), so the line and ``/metrics``
never disagree. An idle interval prints nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from prometheus_client import Counter

from infra.metrics import (
    EVENTS_CONSUMED,
    EVENTS_FAILED,
    HELIX_CALLS,
    PUSHES_REJECTED,
    SMS_INGESTED,
    VERIFICATIONS,
    WEBHOOK_ATTEMPTS,
)
from infra.settings import Settings

log = structlog.get_logger("simfleet")


def total(counter: Counter, **labels: str) -> float:
    """The counter's value summed over its label sets (those matching ``labels``)."""
    found = 0.0
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                found += sample.value
    return found


COUNTS: dict[str, Callable[[], float]] = {
    "sms_in": lambda: total(SMS_INGESTED),
    "pushes_rejected": lambda: total(PUSHES_REJECTED),
    "events_handled": lambda: total(EVENTS_CONSUMED),
    "events_to_dlq": lambda: total(EVENTS_FAILED),
    "webhooks_delivered": lambda: total(WEBHOOK_ATTEMPTS, outcome="delivered"),
    "webhook_attempts_failed": lambda: (
        total(WEBHOOK_ATTEMPTS) - total(WEBHOOK_ATTEMPTS, outcome="delivered")
    ),
    "helix_calls": lambda: total(HELIX_CALLS),
    "numbers_verified": lambda: total(VERIFICATIONS, outcome="online"),
}


class Summary:
    """Counts since the previous ``since_last`` call."""

    def __init__(self) -> None:
        self._last = {name: read() for name, read in COUNTS.items()}

    def since_last(self) -> dict[str, int]:
        now = {name: read() for name, read in COUNTS.items()}
        changed = {k: int(now[k] - self._last[k]) for k in now}
        self._last = now
        return {k: v for k, v in changed.items() if v}


async def console_summary(settings: Settings) -> None:
    """Logs ``summary`` every ``SIMFLEET_SUMMARY_INTERVAL_S`` with the non-zero counts."""
    summary = Summary()
    interval = settings.summary_interval_s
    while True:
        await asyncio.sleep(interval)
        if counts := summary.since_last():
            log.info("summary", interval_s=interval, **counts)
