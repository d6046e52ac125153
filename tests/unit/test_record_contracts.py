"""The contract check every published record passes through (tests/support/record_contracts.py)
says what a broken record breaks, in the value and in the headers, whichever validator rejects."""

import json
from datetime import UTC, datetime

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from events import codec
from events.envelope import EVENT_TYPES
from events.sms import SmsReceived
from tests.support.record_contracts import messages, problems, value_schema

AT = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)


def received() -> tuple[str, bytes, dict[str, str], bytes]:
    event = SmsReceived.create(
        producer="simfleet/test", time=AT, gateway_id="gw-1", port="1.01",
        sender="+15551230000", to="+15550001111", body="hello", received_at=AT,
    )  # fmt: skip
    return "t.sms.inbound", event.subject.encode(), codec.headers_for(event), codec.encode(event)


def with_value(value: bytes, **changes: object) -> bytes:
    record = json.loads(value)
    for path, new in changes.items():
        *parents, leaf = path.split("__")
        node = record
        for parent in parents:
            node = node[parent]
        node[leaf] = new
    return json.dumps(record).encode()


def test_a_record_as_the_bus_writes_it_keeps_every_contract() -> None:
    assert problems(*received()) == []


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"data__received_at": "yesterday"}, "is not a 'date-time'"),
        ({"data__surplus": 1}, "Additional properties are not allowed"),
        ({"specversion": "0.3"}, "'1.0' was expected"),
        ({"data__body": 7}, "is not of type 'string'"),
    ],
)
def test_a_broken_value_is_named(changes: dict[str, object], said: str) -> None:
    topic, key, headers, value = received()
    found = problems(topic, key, headers, with_value(value, **changes))
    assert any(p.startswith("value: ") and said in p for p in found), found


def test_a_broken_header_is_named() -> None:
    topic, key, headers, value = received()
    found = problems(topic, key, headers | {"ce_time": "yesterday"}, value)
    assert any(p.startswith("headers: ") for p in found), found
    assert any("header ce_time 'yesterday' is not the value's time" in p for p in found)


def test_a_wrong_key_and_a_wrong_topic_are_named() -> None:
    _, _, headers, value = received()
    found = problems("t.sim.lifecycle", b"someone-else", headers, value)
    assert "key b'someone-else' is not the subject" in " ".join(found)
    assert "sms.received published to t.sim.lifecycle, not its channel" in found


def test_every_published_schema_is_read_by_both_validators() -> None:
    """Both schema dialects as the fast validator reads them are valid schemas to jsonschema too:
    what it explains is the document the fast one checked."""
    for event_type in EVENT_TYPES:
        Draft202012Validator.check_schema(value_schema(event_type))
        Draft7Validator.check_schema(messages()[event_type]["headers"])
