"""The hot path's ``webhook.delivery_succeeded`` is the event ``Event.create`` makes: same id,
same bytes on the wire, and it decodes as any other event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumers.webhooks.attempts import PRODUCER, delivered_fact
from consumers.webhooks.claims import Job
from events import codec
from events.webhook import WebhookDeliverySucceeded
from infra.webhook_sender import AttemptResult, Outcome

T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)
T1 = datetime(2026, 2, 4, 12, 0, 0, 412_000, tzinfo=UTC)


def job(correlationid: str = "corr-1") -> Job:
    return Job(
        message_id="sms.received_0123abcd",
        endpoint_id="acme-main",
        reseller_id="acme",
        event_type="sms.received",
        correlationid=correlationid,
        body="{}",
        sequence=2,
        attempt=3,
        tries=1,
        started_at=T0,
    )


@pytest.mark.parametrize(
    ("answer", "correlationid"),
    [
        ("ok", "corr-1"),
        (None, "corr-1"),
        ("thanks \x00 got it — ünïcode", "corr-1"),  # U+0000 from a receiver: made storable
        ("ok", ""),  # no correlation id: the event's own id, as create() does
    ],
)
def test_the_fast_event_is_the_created_event(answer: str | None, correlationid: str) -> None:
    result = AttemptResult(Outcome.DELIVERED, 200, 12.345, answer=answer)
    fast = delivered_fact(job(correlationid), result, T0, T1)
    created = WebhookDeliverySucceeded.create(
        producer=PRODUCER,
        time=T1,
        correlationid=correlationid,
        message_id="sms.received_0123abcd",
        endpoint_id="acme-main",
        reseller_id="acme",
        event_type="sms.received",
        attempt=3,
        status_code=200,
        latency_ms=12.345,
        attempted_at=T0,
        response=answer,
    )

    assert fast == created
    assert codec.encode(fast) == codec.encode(created)
    assert codec.headers_for(fast) == codec.headers_for(created)
    assert codec.decode(codec.encode(fast)) == created


def test_the_id_is_create_s_for_any_endpoint_id() -> None:
    odd = Job(
        "number.offline_9f", 'ep-ünï "q" \\ 🎉', "acme", "number.offline", "c", "{}", 1, 7, 1, T0
    )
    result = AttemptResult(Outcome.DELIVERED, 204, 1.0)
    created = WebhookDeliverySucceeded.create(
        producer=PRODUCER, time=T1, correlationid="c", message_id=odd.message_id,
        endpoint_id=odd.endpoint_id, reseller_id="acme", event_type="number.offline", attempt=7,
        status_code=204, latency_ms=1.0, attempted_at=T0, response=None,
    )  # fmt: skip
    assert delivered_fact(odd, result, T0, T1).id == created.id
