"""webhook_deliveries is order-safe: the highest attempt wins, across batches too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events.envelope import Event
from events.topics import WEBHOOK_DELIVERIES
from events.webhook import WebhookDeliveryFailed, WebhookDeliverySucceeded
from infra.postgres import connect
from projections.batches import Record
from projections.deliveries import DeliveriesProjection

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)
FIELDS = {"message_id": "m1", "endpoint_id": "e1", "reseller_id": "r", "event_type": "sms.received"}


def record(event: Event, offset: int) -> Record:
    return Record(event, WEBHOOK_DELIVERIES.name, 0, offset, None, b"")


def failed(attempt: int, *, final: bool = False) -> WebhookDeliveryFailed:
    return WebhookDeliveryFailed.create(
        producer="t",
        time=T0,
        attempt=attempt,
        attempted_at=T0,
        error=f"HTTP 500 ({attempt})",
        status_code=500,
        final=final,
        next_attempt_at=None if final else T0,
        **FIELDS,
    )


def delivered(attempt: int) -> WebhookDeliverySucceeded:
    return WebhookDeliverySucceeded.create(
        producer="t",
        time=T0,
        attempt=attempt,
        attempted_at=T0,
        status_code=200,
        latency_ms=12.5,
        **FIELDS,
    )


async def test_a_late_failure_never_overwrites_a_later_success(database_url: str) -> None:
    conn = await connect(database_url)
    projection = DeliveriesProjection()
    try:
        await projection.apply(conn, [record(failed(1), 0), record(delivered(3), 1)])
        await projection.apply(conn, [record(failed(2), 2)])  # arrives late
        after_late = await conn.fetchrow("SELECT * FROM webhook_deliveries")
        await projection.apply(conn, [record(failed(4, final=True), 3)])  # a resend that failed
        after_resend = await conn.fetchrow("SELECT * FROM webhook_deliveries")
    finally:
        await conn.close()

    assert (after_late["status"], after_late["attempts"], after_late["last_status_code"]) == (
        "delivered",
        3,
        200,
    )
    assert after_late["last_error"] is None
    assert after_late["delivered_at"] == T0
    assert (after_resend["status"], after_resend["attempts"]) == ("failed", 4)
    assert after_resend["last_error"] == "HTTP 500 (4)"
    assert after_resend["delivered_at"] == T0  # when it was delivered before is kept
