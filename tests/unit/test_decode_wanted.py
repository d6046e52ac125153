"""A batch's records sorted by their ``ce_type`` header: others never parsed, bad ones parked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from aiokafka import ConsumerRecord

from events import codec
from events.sms import SmsReceived
from infra.dead_letters import DeadLetters, decode_wanted, type_of

T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)


def record(offset: int, value: bytes, headers: list[tuple[str, bytes]]) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord("sms.inbound", 0, offset, 0, 0, None, value, None, 0, 0, headers)


class Parking:
    def __init__(self) -> None:
        self.parked: list[tuple[int, dict[str, str]]] = []

    async def park(self, rec: Any, *, headers: Any, error: Exception, event_id: Any) -> None:
        self.parked.append((rec.offset, headers))


async def test_only_wanted_types_are_decoded_and_a_bad_one_parked_with_its_headers() -> None:
    event = SmsReceived.create(
        producer="test", time=T0, gateway_id="gw-1", port="1.01", sender="+15551230000",
        to="+15559870000", body="hello", received_at=T0,
    )  # fmt: skip
    headers = [(k, v.encode()) for k, v in codec.headers_for(event).items()]
    bad_headers = [("ce_id", b"broken-1"), ("ce_type", b"sms.received")]
    records = [
        record(0, codec.encode(event), headers),
        record(1, b"not json", [("ce_type", b"gateway.status_reported")]),  # unwanted: unread
        record(2, b"not json", bad_headers),
        record(3, b"not json", []),  # no type at all
    ]
    dead = Parking()

    found = await decode_wanted(records, {"sms.received"}, cast(DeadLetters, dead))

    assert [(r.offset, e) for r, e in found] == [(0, event)]
    assert dead.parked == [(2, {"ce_id": "broken-1", "ce_type": "sms.received"})]


def test_the_type_is_the_last_ce_type_header_as_the_full_header_read_has_it() -> None:
    repeated = [("ce_type", b"a"), ("ce_id", b"x"), ("ce_type", b"b")]
    assert type_of(record(0, b"", repeated)) == "b"
    assert type_of(record(0, b"", [])) is None
