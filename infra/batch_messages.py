"""A batch subscriber's message as FastStream's Kafka batch parser makes it, less the header
dictionary it decodes for every record (``batch_headers``) and the list of every value (``body``).

Nothing here reads them: a batch handler takes the records themselves (``raw_message``) and
reads the one header it sorts by (``infra.dead_letters.type_of``), and the subscribers decode no
body (``infra.kafka.consume_batches``). Those per-record dictionaries were ~2 % of the webhook
consumer's CPU per delivery in a catch-up. The batch's own headers (its first record's, as
FastStream takes them for the message's id, correlation and logging) are kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRecord
from faststream._internal.utils.path import match_path
from faststream.kafka.parser import AioKafkaBatchParser
from faststream.message import StreamMessage

Records = tuple[ConsumerRecord[Any, Any], ...]
Parse = Callable[[Records], Awaitable[StreamMessage[Any]]]


async def batch_message(records: Records, original: Parse) -> StreamMessage[Any]:
    """``original(records)`` (``AioKafkaBatchParser.parse_batch``) made leaner; any other
    parser is left to do its own work."""
    parser = getattr(original, "__self__", None)
    if not isinstance(parser, AioKafkaBatchParser) or not records:
        return await original(records)
    first, last = records[0], records[-1]
    headers = {name: value.decode() for name, value in first.headers}
    message: StreamMessage[Any] = parser.msg_class(
        body=[],
        headers=headers,
        batch_headers=[],
        reply_to=headers.get("reply_to", ""),
        content_type=headers.get("content-type"),
        message_id=f"{first.offset}-{last.offset}-{first.timestamp}",
        correlation_id=headers.get("correlation_id"),
        raw_message=records,
        path=match_path(parser.regex, first.topic),
        consumer=parser._consumer,  # the one it hands every message it parses
    )
    return message
