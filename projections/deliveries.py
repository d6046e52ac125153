"""Webhook deliveries: ``webhook_deliveries``, one row per (message_id, endpoint).

Reads ``webhook.deliveries`` (webhook.delivery_succeeded, webhook.delivery_failed). Attempt
numbers only grow (a resend continues the count), so the row shows the highest attempt seen:
a late "attempt 2 failed" never overwrites "attempt 3 delivered", in a batch or across
batches, live or in a replay. Status: ``retrying`` (a further attempt is due), ``delivered``,
``failed`` (final); ``pending`` is the table's default for a row no attempt has reached yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never, cast

import asyncpg

from events.topics import WEBHOOK_DELIVERIES, Topic
from events.webhook import WebhookDeliveryEvent, WebhookDeliveryFailed, WebhookDeliverySucceeded
from projections.batches import Record

UPSERT_DELIVERIES = """
INSERT INTO webhook_deliveries AS d (message_id, endpoint, reseller_id, event_type, status,
    attempts, last_status_code, last_error, last_latency_ms, next_attempt_at, delivered_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
    $7::int[], $8::text[], $9::float8[], $10::timestamptz[], $11::timestamptz[])
ON CONFLICT (message_id, endpoint) DO UPDATE SET
    status = EXCLUDED.status, attempts = EXCLUDED.attempts,
    last_status_code = EXCLUDED.last_status_code, last_error = EXCLUDED.last_error,
    last_latency_ms = EXCLUDED.last_latency_ms, next_attempt_at = EXCLUDED.next_attempt_at,
    delivered_at = coalesce(EXCLUDED.delivered_at, d.delivered_at), updated_at = now()
WHERE EXCLUDED.attempts > d.attempts
"""

Attempt = WebhookDeliveryEvent  # every type on the topic is one attempt's outcome


def latest_attempts(events: Sequence[Attempt]) -> list[Attempt]:
    """Per (message, endpoint) the highest attempt: one row per key for one INSERT."""
    latest: dict[tuple[str, str], Attempt] = {}
    for e in events:
        key = (e.data.message_id, e.data.endpoint_id)
        if key not in latest or e.data.attempt > latest[key].data.attempt:
            latest[key] = e
    return list(latest.values())


def row_status(event: Attempt) -> str:
    """Exhaustive: a new type on the topic fails the type check here."""
    match event:
        case WebhookDeliverySucceeded():
            return "delivered"
        case WebhookDeliveryFailed(data=d):
            return "failed" if d.final else "retrying"
        case _:
            assert_never(event)


class DeliveriesProjection:
    name = "webhook_deliveries"
    topics: tuple[Topic, ...] = (WEBHOOK_DELIVERIES,)
    tables: tuple[str, ...] = ("webhook_deliveries",)

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        # the runner decodes this topic with its own decoder: every event is of its union
        attempts = latest_attempts([cast(Attempt, r.event) for r in records])
        if not attempts:
            return
        failures = [e if isinstance(e, WebhookDeliveryFailed) else None for e in attempts]
        await conn.execute(
            UPSERT_DELIVERIES,
            [e.data.message_id for e in attempts],
            [e.data.endpoint_id for e in attempts],
            [e.data.reseller_id for e in attempts],
            [e.data.event_type for e in attempts],
            [row_status(e) for e in attempts],
            [e.data.attempt for e in attempts],
            [e.data.status_code for e in attempts],
            [f.data.error if f else None for f in failures],
            [e.data.latency_ms for e in attempts],
            [f.data.next_attempt_at if f else None for f in failures],
            [None if f else e.data.attempted_at for e, f in zip(attempts, failures, strict=True)],
        )
