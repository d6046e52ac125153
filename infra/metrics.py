"""Prometheus metrics of every simfleet process (served on ``/metrics`` by the ops server)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

SMS_INGESTED = Counter("simfleet_sms_ingested_total", "SMS accepted by the gateway bridge")
PUSHES_REJECTED = Counter(
    "simfleet_pushes_rejected_total", "Gateway pushes refused by the bridge", ["status"]
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
