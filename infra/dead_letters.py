"""Dead letters: what a consumer cannot process goes to ``<topic>.dlq`` with the error.

The record is kept verbatim (value, key, headers) with ``dlq_*`` headers naming where it came
from and why, so an operator can inspect, fix and re-publish it; the source partition moves on.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import structlog
from aiokafka import ConsumerRecord, TopicPartition
from faststream import BaseMiddleware
from faststream.message import StreamMessage

from events import EventDecodeError
from events.codec import ANY_EVENT, Decoder
from events.envelope import Event
from events.topics import HEADER_TYPE
from infra.bus import Bus
from infra.metrics import CONSUMER_LAG, EVENTS_CONSUMED, EVENTS_FAILED, consumer_started
from infra.outages import outlasting_outages

log = structlog.get_logger("simfleet.dlq")
T = TypeVar("T")

MAX_ERROR_CHARS = 2000
OUTAGE_RETRY_S = 1.0


class KafkaRecord(Protocol):
    """What a dead letter keeps of a record: an aiokafka ConsumerRecord or a decoded Record."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...


class DeadLetters:
    def __init__(self, bus: Bus, consumer: str) -> None:
        self._bus = bus
        self._consumer = consumer
        consumer_started(consumer)

    async def park(
        self,
        record: KafkaRecord,
        *,
        headers: Mapping[str, str],
        error: BaseException | str,
        event_id: str | None = None,
    ) -> None:
        """The record as read, with the error: what every consumer does with what it cannot use."""
        await self.send(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=headers,
            error=error,
            event_id=event_id,
        )

    async def send(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        headers: Mapping[str, str],
        error: BaseException | str,
        event_id: str | None = None,
    ) -> None:
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        dead_headers = {
            **headers,
            "dlq_error": reason[:MAX_ERROR_CHARS],
            "dlq_topic": topic,
            "dlq_partition": str(partition),
            "dlq_offset": str(offset),
            "dlq_consumer": self._consumer,
        }
        await self._bus.publish_raw(f"{topic}.dlq", value, key=key, headers=dead_headers)
        EVENTS_FAILED.labels(self._consumer).inc()
        log.error(
            "event_dead_lettered",
            consumer=self._consumer,
            event_id=event_id or headers.get("ce_id"),
            event_type=headers.get("ce_type"),
            topic=topic,
            partition=partition,
            offset=offset,
            error=reason[:MAX_ERROR_CHARS],
        )


class DeadLetterMiddleware(BaseMiddleware):
    """The one place a FastStream consumer's failure is caught: the record goes to the DLQ.

    Subscribers run with ``AckPolicy.ACK``, which commits the offset even when the handler
    raised; publishing the record to ``<topic>.dlq`` first is what makes that safe. Business
    outcomes are events emitted by handlers. A failure is sorted by ``infra.outages``: an
    outage (Postgres restarting, the broker away) is waited out and the handler run again, so
    a live request is never parked for it; anything else cannot be processed as it is and is
    parked. Every line the handler logs carries the event's id, type, correlation id and
    position.
    """

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        record = msg.raw_message
        headers = dict(msg.headers)
        kafka_consumer = getattr(msg, "consumer", None)
        group = _group_of(kafka_consumer)
        with structlog.contextvars.bound_contextvars(
            event_id=headers.get("ce_id"),
            event_type=headers.get("ce_type"),
            correlationid=headers.get("ce_correlationid"),
            topic=getattr(record, "topic", None),
            partition=getattr(record, "partition", None),
            offset=getattr(record, "offset", None),
        ):
            if not hasattr(record, "topic"):  # not a Kafka record (test harness): no DLQ
                result = await call_next(msg)
            else:
                results: list[Any] = []

                async def handle() -> None:
                    results.append(await call_next(msg))

                # an outage is waited out (handlers are idempotent by event id); the rest parked
                if (err := await outlasting_outages(handle, OUTAGE_RETRY_S)) is not None:
                    bus: Bus = self.context.get("bus")
                    await DeadLetters(bus, group).park(
                        record,
                        headers=headers,
                        error=err,
                        event_id=getattr(err, "event_id", None) or headers.get("ce_id"),
                    )
                    return None
                result = results[-1]
            EVENTS_CONSUMED.labels(group).inc()
            _record_lag(kafka_consumer, group, record)
            return result


def observe_batch(msg: StreamMessage[Any], records: Sequence[Any]) -> None:
    """Metrics of a batch subscriber (which has no middleware): events consumed, and lag."""
    kafka_consumer = getattr(msg, "consumer", None)
    group = _group_of(kafka_consumer)
    EVENTS_CONSUMED.labels(group).inc(len(records))
    last = {(r.topic, r.partition): r for r in records}
    for record in last.values():
        _record_lag(kafka_consumer, group, record)


def _group_of(kafka_consumer: Any) -> str:
    # aiokafka keeps the group id private; metrics and dead letters are labelled by it
    return str(getattr(kafka_consumer, "_group_id", None) or "consumers")


def _record_lag(kafka_consumer: Any, group: str, record: Any) -> None:
    """Records behind the partition's end, from the high watermark the last fetch reported.
    A metric never fails the work it measures: a partition revoked meanwhile (a rebalance
    during a long batch) is skipped, as is anything else the consumer objects to."""
    highwater = getattr(kafka_consumer, "highwater", None)
    if highwater is None or not hasattr(record, "topic"):
        return
    partition = TopicPartition(record.topic, record.partition)
    try:
        if partition not in kafka_consumer.assignment():
            return
        end = highwater(partition)
    except Exception as err:
        log.debug(
            "lag_not_measured", topic=record.topic, partition=record.partition, error=repr(err)
        )
        return
    if end is not None:
        CONSUMER_LAG.labels(group, record.topic, record.partition).set(end - record.offset - 1)


async def decode_wanted(
    records: Sequence[ConsumerRecord[Any, Any]],
    wanted: Collection[str],
    dead: DeadLetters,
    *,
    admit: Callable[[ConsumerRecord[Any, Any]], bool] = lambda _record: True,
    decoder: Decoder = ANY_EVENT,
) -> list[tuple[ConsumerRecord[Any, Any], Event]]:
    """A batch's records of the ``wanted`` types (by header: others are never parsed) that
    ``admit`` lets through, decoded by ``decoder`` (one of the wanted types only, where the
    caller dispatches over them; a value whose type disagrees with its header is then refused);
    a record that does not decode is parked, the rest go on."""
    found = []
    for record in records:
        if type_of(record) not in wanted or not admit(record):
            continue
        try:
            found.append((record, decoder.decode(record.value)))
        except EventDecodeError as err:
            headers = headers_of(record)
            await dead.park(record, headers=headers, error=err, event_id=err.event_id)
    return found


def type_of(record: ConsumerRecord[Any, Any]) -> str | None:
    """The record's ``ce_type``: the one header every record is sorted by, read without
    decoding the others (per record, on every batch consumer's hot path)."""
    found = None
    for name, value in record.headers or ():
        if name == HEADER_TYPE:  # the last one, as `headers_of` reads a repeated header
            found = value
    return None if found is None else str(found.decode(errors="replace"))


async def apply_isolating(
    items: Sequence[tuple[ConsumerRecord[Any, Any], T]],
    apply: Callable[[list[T]], Awaitable[None]],
    dead: DeadLetters,
    *,
    retry_s: float = 1.0,
) -> None:
    """Applies a batch's items, waiting out outages (``infra.outages``). Should the batch fail
    otherwise, the items are applied one at a time and those that still fail are parked: a
    batch subscriber reads a failed batch again, so one bad event would hold its partition."""
    whole = [item for _record, item in items]
    if await outlasting_outages(functools.partial(apply, whole), retry_s) is None:
        return
    for record, item in items:
        if (err := await outlasting_outages(functools.partial(apply, [item]), retry_s)) is not None:
            headers = headers_of(record)
            await dead.park(record, headers=headers, error=err, event_id=headers.get("ce_id"))


def headers_of(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in (record.headers or ())}
