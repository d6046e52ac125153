"""Webhook delivery attempts: ``webhook_attempts``, one row per (message, endpoint, attempt).

Reads ``webhook.deliveries`` (webhook.delivery_succeeded, webhook.delivery_failed). Where
``webhook_deliveries`` keeps a delivery's latest state, this keeps every attempt — status code,
latency, error and the start of the endpoint's answer — for the reseller portal.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from events.topics import WEBHOOK_DELIVERIES, Topic
from events.webhook import WebhookDeliveryFailed, WebhookDeliverySucceeded
from projections.batches import Record

INSERT_ATTEMPTS = """
INSERT INTO webhook_attempts (message_id, endpoint_id, attempt, reseller_id, succeeded,
    status_code, latency_ms, error, response, attempted_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::bool[], $6::int[],
    $7::float8[], $8::text[], $9::text[], $10::timestamptz[])
ON CONFLICT DO NOTHING
"""


class AttemptsProjection:
    name = "webhook_attempts"
    topics: tuple[Topic, ...] = (WEBHOOK_DELIVERIES,)
    tables: tuple[str, ...] = ("webhook_attempts",)

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        attempts = [
            r.event
            for r in records
            if isinstance(r.event, WebhookDeliverySucceeded | WebhookDeliveryFailed)
        ]
        if not attempts:
            return
        await conn.execute(
            INSERT_ATTEMPTS,
            [e.data.message_id for e in attempts],
            [e.data.endpoint_id for e in attempts],
            [e.data.attempt for e in attempts],
            [e.data.reseller_id for e in attempts],
            [isinstance(e, WebhookDeliverySucceeded) for e in attempts],
            [e.data.status_code for e in attempts],
            [e.data.latency_ms for e in attempts],
            [e.data.error if isinstance(e, WebhookDeliveryFailed) else None for e in attempts],
            [e.data.response for e in attempts],
            [e.data.attempted_at for e in attempts],
        )
