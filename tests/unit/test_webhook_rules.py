import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.webhooks.rules import (
    Action,
    Schedule,
    SimFacts,
    after_attempt,
    body_json,
    jittered,
    subscribed,
    webhook_body,
)
from events.sim import NumberOnline, SimCancelled
from events.sms import SmsReceived
from events.webhook import WebhookDeliveryFailed, WebhookDeliverySucceeded
from infra.settings import WebhookSettings
from infra.webhook_sender import Outcome
from policies.webhook_format import iso
from producers.reseller_commands import parse_iccid_lines
from projections.deliveries import latest_attempts, row_status

T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)
DEFAULT = Schedule.from_settings(WebhookSettings())
NO_JITTER = 0.5  # rand() = 0.5 puts jittered() exactly on the planned delay


def test_an_endpoint_without_types_receives_everything() -> None:
    assert subscribed("sms.received", ())
    assert subscribed("sms.received", ("sms.received", "sim.cancelled"))
    assert not subscribed("number.online", ("sms.received",))


def attempt_times(outcome: Outcome = Outcome.RETRYABLE) -> list[float]:
    """Seconds after the first attempt at which each attempt is made, until the schedule ends."""
    at, times, tries = T0, [0.0], 1
    while True:
        step = after_attempt(
            outcome, tries, started_at=T0, now=at, schedule=DEFAULT, rand=lambda: NO_JITTER
        )
        if step.final:
            return times
        assert step.at is not None
        at, tries = step.at, tries + 1
        times.append((at - T0).total_seconds())


def test_the_default_schedule_is_the_originals_then_the_long_one_up_to_a_day() -> None:
    assert attempt_times() == [
        0,
        1,
        3,
        7,
        15,  # the original: 5 tries, 1, 2, 4, 8 s apart
        75,
        375,
        2175,
        9375,
        30975,  # 1 min, 5 min, 30 min, 2 h, 6 h
        52575,
        74175,  # 6 h more while within 24 h
    ]


def test_fast_retries_wait_in_process_and_later_ones_go_to_the_retry_topic() -> None:
    soon = after_attempt(Outcome.RETRYABLE, 1, started_at=T0, now=T0, schedule=DEFAULT)
    later = after_attempt(Outcome.REJECTED, 5, started_at=T0, now=T0, schedule=DEFAULT)
    assert (soon.action, soon.at) == (Action.RETRY_SOON, T0 + timedelta(seconds=1))
    assert later.action is Action.RETRY_LATER
    assert later.at is not None
    assert 48 <= (later.at - T0).total_seconds() <= 72  # 60 s ± 20 %


@pytest.mark.parametrize(
    ("outcome", "action"),
    [
        (Outcome.DELIVERED, Action.DONE),
        (Outcome.GONE, Action.DISABLE),
        (Outcome.BLOCKED, Action.GIVE_UP),
        (Outcome.REJECTED, Action.RETRY_SOON),
        (Outcome.RETRYABLE, Action.RETRY_SOON),
    ],
)
def test_outcomes(outcome: Outcome, action: Action) -> None:
    step = after_attempt(outcome, 1, started_at=T0, now=T0, schedule=DEFAULT)
    assert step.action is action
    assert step.final == (action in (Action.DONE, Action.DISABLE, Action.GIVE_UP))


def test_a_longer_retry_after_is_honoured_through_the_retry_topic() -> None:
    step = after_attempt(
        Outcome.RETRYABLE, 1, started_at=T0, now=T0, schedule=DEFAULT, retry_after_s=120
    )
    assert (step.action, step.at) == (Action.RETRY_LATER, T0 + timedelta(seconds=120))


def test_no_attempt_is_planned_past_the_maximum_age() -> None:
    late = T0 + timedelta(hours=23, minutes=59)
    step = after_attempt(Outcome.RETRYABLE, 9, started_at=T0, now=late, schedule=DEFAULT)
    assert step.action is Action.GIVE_UP


def test_jitter_stays_within_its_fraction() -> None:
    assert jittered(100, 0.2, lambda: 0.0) == 80
    assert jittered(100, 0.2, lambda: 1.0) == 120
    assert jittered(100, 0.0, lambda: 0.9) == 100


def sms(**fields: Any) -> SmsReceived:
    base: dict[str, Any] = {
        "gateway_id": "gw-1",
        "port": "1.01",
        "sender": "+10987654321",
        "body": "Your code is 123456",
        "received_at": T0,
    }
    return SmsReceived.create(producer="t", time=T0, **{**base, **fields})


def test_sms_body_keeps_the_documented_and_the_ingest_worker_fields() -> None:
    sim = SimFacts(iccid="8901260000000000001", sim_id=123, number="+12345678901")
    event = sms(to="+12345678901")
    body = json.loads(webhook_body(event, sim))
    assert body == {
        "event_type": "sms.received",
        "message_id": event.id,
        "created_at": "2026-02-04T12:00:00Z",
        "data": {
            "to": "+12345678901",
            "from": "+10987654321",
            "body": "Your code is 123456",
            "received_at": "2026-02-04T12:00:00Z",
            "sim_id": 123,
            "iccid": "8901260000000000001",
            "number": "+12345678901",
            "message": "Your code is 123456",
            "port": "1.01",
        },
    }


def test_an_sms_without_a_receiving_number_takes_the_sims_number() -> None:
    sim = SimFacts(iccid="8901260000000000001", sim_id=7, number="+12345678901")
    data = json.loads(webhook_body(sms(), sim))["data"]
    assert (data["to"], data["number"], data["iccid"]) == (
        "+12345678901",
        "+12345678901",
        "8901260000000000001",
    )


def test_number_and_cancel_bodies() -> None:
    online = NumberOnline.create(
        producer="t",
        time=T0,
        iccid="8901260000000000001",
        number="+12345678901",
        request_id="r",
        mobility_subscription_id="38106",
        online_until=T0,
    )
    cancelled = SimCancelled.create(
        producer="t", time=T0, iccid="8901260000000000001", request_id="r"
    )
    sim = SimFacts(sim_id=1, mobility_subscription_id="A-1")
    assert json.loads(webhook_body(online, sim))["data"]["mobilitySubscriptionId"] == 38106
    assert json.loads(webhook_body(cancelled, sim))["data"] == {
        "sim_id": 1,
        "iccid": "8901260000000000001",
        "mobility_subscription_id": "A-1",
    }


def test_iso_times_are_utc_with_z() -> None:
    assert iso(datetime(2026, 2, 4, 13, 0, tzinfo=UTC).astimezone()) == "2026-02-04T13:00:00Z"
    assert iso(None) is None


def test_the_highest_attempt_wins_whatever_the_order() -> None:
    delivered = WebhookDeliverySucceeded.create(
        producer="t",
        time=T0,
        message_id="m",
        endpoint_id="e",
        reseller_id="r",
        event_type="sms.received",
        attempt=3,
        attempted_at=T0,
    )
    late = WebhookDeliveryFailed.create(
        producer="t",
        time=T0,
        message_id="m",
        endpoint_id="e",
        reseller_id="r",
        event_type="sms.received",
        attempt=2,
        attempted_at=T0,
        error="HTTP 500",
        final=False,
    )
    assert latest_attempts([delivered, late]) == [delivered]
    assert latest_attempts([late, delivered]) == [delivered]
    assert row_status(delivered) == "delivered"
    assert row_status(late) == "retrying"


def test_iccid_files() -> None:
    text = "iccid\n8901260000000000001\n\n# a comment\n8901260000000000002,extra\n12ab\n"
    assert parse_iccid_lines(text) == (
        ["8901260000000000001", "8901260000000000002"],
        ["line 6: not an ICCID (19-20 digits): '12ab'"],
    )


@pytest.mark.parametrize(
    "value",
    [
        "Your code is 123456",
        'quotes " and \\ backslash, / slash',
        "tabs\tnew\nlines\r\x01\x1f\x7f control",
        "ünïcödé — emoji 🎉, U+2028 \u2028 U+2029 \u2029",
        12345678901234567890123,  # past 64 bits: json makes it
        -(2**63),
        None,
        True,
    ],
)
def test_a_body_is_the_json_the_original_sent_byte_for_byte(value: Any) -> None:
    envelope = {"event_type": "sms.received", "data": {"body": value, "n": [1, 0, None]}}
    assert body_json(envelope) == json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
