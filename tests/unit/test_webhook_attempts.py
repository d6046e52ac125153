"""The hot path's ``webhook.delivery_succeeded`` record is the event ``Event.create`` makes, as
``Bus`` writes it: same id, key, value bytes and headers, and it decodes as any other event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from consumers.webhooks.attempts import PRODUCER, delivered_record
from consumers.webhooks.claims import Job
from events import codec
from events.topics import WEBHOOK_DELIVERIES
from events.webhook import WebhookDeliverySucceeded
from infra.webhook_sender import AttemptResult, Outcome
from tests.support.webhook_jobs import CLAIMED_AT, job

T0 = CLAIMED_AT
T1 = datetime(2026, 2, 4, 12, 0, 0, 412_000, tzinfo=UTC)
PARIS = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("answer", "correlationid", "latency_ms", "times"),
    [
        ("ok", "corr-1", 12.345, (T0, T1)),
        (None, "corr-1", 12.345, (T0, T1)),
        ("thanks \x00 got it — ünïcode", "corr-1", 12.345, (T0, T1)),  # U+0000: made storable
        ('"quoted" \\ </script>\t🎉', "corr-1", 12.345, (T0, T1)),  # escapes as pydantic's
        ("ok", "", 12.345, (T0, T1)),  # no correlation id: the event's own id, as create() does
        ("ok", "corr-1", 0.001, (T0, T1)),
        ("ok", "corr-1", 1234567.891, (T0, T1)),
        ("ok", "corr-1", 1e-07, (T0, T1)),  # floats written as pydantic writes them
        ("ok", "corr-1", 3.0, (T1.replace(microsecond=7), T0)),  # no microseconds, and a few
        ("ok", "corr-1", 3.0, (T0.astimezone(PARIS), T1.astimezone(PARIS))),  # an offset
    ],
)
def test_the_fast_record_is_the_created_event(
    answer: str | None, correlationid: str, latency_ms: float, times: tuple[datetime, datetime]
) -> None:
    attempted_at, now = times
    result = AttemptResult(Outcome.DELIVERED, 200, latency_ms, answer=answer)
    fast = delivered_record(job(correlationid), result, attempted_at, now)
    created = WebhookDeliverySucceeded.create(
        producer=PRODUCER,
        time=now,
        correlationid=correlationid,
        message_id="sms.received_0123abcd",
        endpoint_id="acme-main",
        reseller_id="acme",
        event_type="sms.received",
        attempt=3,
        status_code=200,
        latency_ms=latency_ms,
        attempted_at=attempted_at,
        response=answer,
    )

    assert fast.topic is WEBHOOK_DELIVERIES
    assert fast.key == created.subject.encode()
    assert fast.value == codec.encode(created)
    assert fast.headers == [(k, v.encode()) for k, v in codec.headers_for(created).items()]
    assert codec.decode(fast.value) == created


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
    assert codec.decode(delivered_record(odd, result, T0, T1).value) == created
