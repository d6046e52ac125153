"""The lean batch message carries what FastStream's own parser gives a batch handler."""

from __future__ import annotations

import re
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka.message import KafkaAckableMessage
from faststream.kafka.parser import AioKafkaBatchParser

from infra.batch_messages import batch_message


def record(offset: int, headers: list[tuple[str, bytes]]) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic="t.sms.inbound", partition=2, offset=offset, timestamp=1_700_000_000_000 + offset,
        timestamp_type=0, key=b"k", value=b'{"id": 1}', checksum=None, serialized_key_size=1,
        serialized_value_size=9, headers=headers,
    )  # fmt: skip


async def test_the_lean_message_is_the_parsers_but_for_per_record_headers_and_values() -> None:
    parser = AioKafkaBatchParser(
        msg_class=KafkaAckableMessage, regex=re.compile(r"t\.(?P<name>[a-z]+)\.inbound")
    )
    records = (
        record(7, [("ce_type", b"sms.received"), ("correlation_id", b"c-1"), ("reply_to", b"r")]),
        record(8, [("ce_type", b"sms.received"), ("correlation_id", b"c-2")]),
    )

    full = await parser.parse_batch(records)
    lean = await batch_message(records, parser.parse_batch)

    assert type(lean) is type(full)
    same = ("headers", "reply_to", "content_type", "message_id", "correlation_id", "path")
    assert {a: getattr(lean, a) for a in same} == {a: getattr(full, a) for a in same}
    assert lean.raw_message is records
    assert lean.consumer is full.consumer  # type: ignore[attr-defined]
    assert (lean.batch_headers, lean.body) == ([], [])


async def test_another_parser_does_its_own_work() -> None:
    records = (record(1, []),)

    async def other(given: tuple[ConsumerRecord[Any, Any], ...]) -> Any:
        return ("parsed", given)

    got: Any = await batch_message(records, other)
    assert got == ("parsed", records)
