"""Prometheus metrics of every simfleet process (served on ``/metrics`` by the ops server).

docs/metrics.md lists them all (a test keeps it complete). Counters that count failures are
created at zero for every label value known up front, so an alert on ``increase(...)`` sees a
series before the first failure rather than missing it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# every operation name HelixClient logs (infra.helix.client, consumers.canceller, consumers.rotation,
# consumers.number_sync, dashboard.helix_query)
HELIX_OPERATIONS = (
    "token",
    "activation",
    "subscriber_details",
    "reason_codes",
    "mdn_change",
    "mdn_change_check",
    "sync_details",
    "dashboard_details",
    *(
        f"{a}_{s}"
        for a in ("cancel", "suspend", "restore")
        for s in ("get_details", "subscription")
    ),
)
WEBHOOK_OUTCOMES = ("delivered", "retryable", "rejected", "gone", "blocked")
VERIFICATION_OUTCOMES = ("sent", "deferred", "skipped", "online", "failed", "retried")
PUSH_REJECTION_STATUSES = ("400", "413", "422")

SMS_INGESTED = Counter("simfleet_sms_ingested_total", "SMS accepted by the gateway bridge")
PUSHES_REJECTED = Counter(
    "simfleet_pushes_rejected_total",
    "Gateway pushes refused by the bridge (and kept on gateway.rejected), by HTTP status",
    ["status"],
)
BRIDGE_REQUESTS = Counter(
    "simfleet_bridge_requests_total",
    "HTTP requests answered by the gateway bridge, by route template, method and status",
    ["route", "method", "status"],
)
BRIDGE_LATENCY = Histogram(
    "simfleet_bridge_request_duration_seconds",
    "Time the gateway bridge took to answer, by route template, method and status",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_CONSUMED = Counter(
    "simfleet_events_consumed_total", "Events handled by a consumer or projection", ["consumer"]
)
EVENTS_FAILED = Counter("simfleet_events_failed_total", "Events sent to a DLQ", ["consumer"])
CONSUMER_LAG = Gauge(
    "simfleet_consumer_lag",
    "Records behind the partition's end",
    ["consumer", "topic", "partition"],
)
WEBHOOK_ATTEMPTS = Counter(
    "simfleet_webhook_attempts_total", "Webhook delivery attempts by outcome", ["outcome"]
)
WEBHOOK_LATENCY = Histogram(
    "simfleet_webhook_latency_seconds", "Webhook attempt latency", buckets=LATENCY_BUCKETS
)
HELIX_CALLS = Counter(
    "simfleet_helix_calls_total", "Helix API calls by operation and result", ["operation", "ok"]
)
HELIX_LATENCY = Histogram(
    "simfleet_helix_latency_seconds", "Helix call latency", ["operation"], buckets=LATENCY_BUCKETS
)
VERIFICATIONS = Counter("simfleet_verifications_total", "Number verification outcomes", ["outcome"])

for _status in PUSH_REJECTION_STATUSES:
    PUSHES_REJECTED.labels(_status)
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOK_ATTEMPTS.labels(_outcome)
for _outcome in VERIFICATION_OUTCOMES:
    VERIFICATIONS.labels(_outcome)
for _operation in HELIX_OPERATIONS:
    for _ok in ("true", "false"):
        HELIX_CALLS.labels(_operation, _ok)


def consumer_started(consumer: str) -> None:
    """Creates the consumer's series at zero (called where a consumer or projection is set up)."""
    EVENTS_CONSUMED.labels(consumer)
    EVENTS_FAILED.labels(consumer)


def bridge_routes_known(routes: Iterable[tuple[str, str]], statuses: Iterable[int]) -> None:
    """Creates the series of each (route, method) and status of the bridge at zero: its documented
    answers, so a first 401 or 503 is an increase an alert can see."""
    codes = [str(s) for s in statuses]
    for route, method in routes:
        for status in codes:
            BRIDGE_REQUESTS.labels(route, method, status)


class RequestMetrics:
    """ASGI middleware counting and timing each answer by route template (never the URL
    itself: a ``/s/<secret>/`` path would put the secret in a label), method and status. Pure
    ASGI rather than an HTTP middleware class: the bridge's per-push cost is measured."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # the router records the matched route in the scope it was handed (this one)
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            labels = (route, scope["method"], str(status))
            BRIDGE_REQUESTS.labels(*labels).inc()
            BRIDGE_LATENCY.labels(*labels).observe(time.perf_counter() - started)
