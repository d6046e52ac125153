"""Dedup that keeps legitimate repeats: the gateway's own identity when it gives one, else the
content at one-second precision."""

from datetime import UTC, datetime, timedelta
from typing import Any

from events.sms import SmsReceived
from producers.skyline.push import parse_json_push

T0 = datetime(2026, 2, 4, 12, 0, 0, tzinfo=UTC)
NOW = datetime(2026, 2, 4, 12, 5, tzinfo=UTC)


def sms(**overrides: Any) -> SmsReceived:
    fields: dict[str, Any] = {
        "gateway_id": "gw",
        "port": "24.01",
        "sender": "Google",
        "to": None,
        "iccid": "89012608822000000011",
        "body": "G-666266 is your Google verification code.",
        "received_at": T0,
    }
    fields.update(overrides)
    return SmsReceived.create(producer="t", time=NOW, **fields)


def test_the_same_code_a_minute_later_is_another_sms() -> None:
    assert sms().id != sms(received_at=T0 + timedelta(minutes=1)).id


def test_within_one_second_it_is_the_same_sms() -> None:
    assert sms().id == sms(received_at=T0 + timedelta(milliseconds=700)).id


def test_the_gateway_identity_wins_over_content_and_time() -> None:
    first = sms(gateway_sms_id="86155307")
    restamped = sms(gateway_sms_id="86155307", received_at=T0 + timedelta(seconds=30))
    other = sms(gateway_sms_id="86155308")
    assert first.id == restamped.id
    assert first.id != other.id
    assert first.id != sms().id


def test_json_push_with_appended_fields_uses_the_inbox_id() -> None:
    def push(inbox_id: str, stamp: int) -> dict[str, Any]:
        row = [
            0,
            "24.01",
            stamp,
            "Google",
            "",
            "Ry02NjYyNjYgaXMgeW91ciBjb2Rl",
            "89012608822000000011",
            "310260000000001",
            inbox_id,
        ]
        return {"type": "recv-sms", "sms_num": 1, "sms": [row]}

    again = parse_json_push(push("86155307", 1762700191), gateway_id="gw", now=NOW).sms[0]
    same = parse_json_push(push("86155307", 1762700191), gateway_id="gw", now=NOW).sms[0]
    repeat = parse_json_push(push("86155399", 1762700191), gateway_id="gw", now=NOW).sms[0]
    assert again.id == same.id
    assert again.id != repeat.id
    assert again.data.gateway_sms_id == "86155307"
