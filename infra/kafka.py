"""Kafka plumbing: the FastStream broker built from settings, the typed event bus, topic set-up.

Producer: ``acks="all"`` and idempotent (a retried send is written once, in order), except on a
broker without InitProducerId (Tansu: ``KAFKA_IDEMPOTENCE=false``, set by the embedded Tansu).
Duplicates from a publisher that itself retries are still recognised by event id. A send failing
on a sequence gap gives the producer a new id (``infra.producer_sequence``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner, murmur2
from faststream import AckPolicy
from faststream.exceptions import IncorrectState
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.subscriber.usecase import (
    ConcurrentBetweenPartitionsSubscriber,
    DefaultSubscriber,
)
from faststream.message import StreamMessage

from events import codec
from events.envelope import Event
from events.topics import HEADER_CORRELATION, HEADER_TYPE, Topic, topic_for_type
from infra.commit_pacing import flush_all, paced_commits
from infra.kafka_address import servers
from infra.kafka_security import broker_security
from infra.kafka_topics import ensure_topics
from infra.metrics import consumer_started
from infra.produce_window import ProduceWindow
from infra.producer_sequence import SEQUENCE_LOST, restart_sequence
from infra.settings import KafkaSettings

__all__ = [
    "GATHER_BYTES",
    "BrokerUnavailable",
    "Bus",
    "EncodedEvent",
    "build_broker",
    "consume",
    "consume_batches",
    "ensure_topics",
]


_T = TypeVar("_T")
# resolves once the broker acknowledged (None where the in-memory test broker delivered at once)
Ack = asyncio.Future[Any] | None


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge a publish in time."""


class ConcurrentStartBroker(KafkaBroker):
    """Starts its subscribers side by side: each consumer group's join waits out the broker's
    rebalance delay (Tansu: half the session timeout, ~5 s), and one after the other that made a
    process with ten groups take ~40 s to be ready."""

    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(sub.start() for sub in self.subscribers))
        for pub in self.publishers:
            await pub.start()
        self.running = True

    async def stop(self, *exc_info: Any) -> None:
        """The batch subscribers' handled offsets committed first (``infra.commit_pacing``)."""
        if self.running:
            await flush_all()
        await super().stop(*exc_info)


def build_broker(
    settings: KafkaSettings,
    bootstrap: str,
    *,
    logger: Any = None,
    middlewares: Sequence[Any] = (),
    client_id: str = "simfleet",
) -> KafkaBroker:
    """``logger``: FastStream's own lines go through ``BrokerLog`` (per-message lines at DEBUG)."""
    return ConcurrentStartBroker(
        servers(bootstrap),
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        linger_ms=settings.kafka_linger_ms,
        max_batch_size=settings.kafka_max_batch_bytes,
        request_timeout_ms=15_000,
        client_id=client_id,
        logger=BrokerLog(logger) if logger is not None else None,
        log_level=logging.DEBUG,  # "Received" / "Processed": two lines per message
        middlewares=middlewares,
        decoder=decode_message,
        partitioner=placed_by_key,
        allow_auto_create_topics=False,
        graceful_timeout=15.0,
        security=broker_security(settings),
    )


KEY_HASHES_KEPT = 65_536
_UNKEYED = DefaultPartitioner()  # stateless: a random available partition


@functools.lru_cache(maxsize=KEY_HASHES_KEPT)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def placed_by_key(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's ``DefaultPartitioner`` (the Java client's murmur2 placement, so other clients
    agree on a key's partition) with each key's hash remembered: aiokafka's murmur2 is pure
    Python, a few µs per record, and a process keeps sending to the same keys (endpoint ids,
    ICCIDs, numbers)."""
    if key is None:
        return int(_UNKEYED(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


# FastStream's start-up chatter per consumer: useful when debugging a group, noise otherwise
_CHATTER = (
    "waiting for messages",
    "assigned to partitions",
    "Auto create topics is disabled",
    "has no partition assignments",
    "partitions revoked",
    "is being executed",  # a consumer task ending, e.g. each one at shutdown
)


class BrokerLog:
    """What FastStream logs, passed on to our logger: its routine per-consumer lines at DEBUG,
    errors and everything else at their own level."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def log(self, level: int, msg: Any, /, *, extra: Any = None, exc_info: Any = None) -> None:
        if level < logging.ERROR and any(part in str(msg) for part in _CHATTER):
            level = logging.DEBUG
        self._logger.log(level, msg, extra=extra, exc_info=exc_info)


async def decode_message(msg: StreamMessage[Any]) -> Event:
    """FastStream decoder: every subscriber receives a typed, validated ``Event``."""
    return codec.decode(msg.body)


def is_type(*classes: type[Event]) -> Callable[[StreamMessage[Any]], Awaitable[bool]]:
    """Subscriber filter on the ``ce_type`` header: unrelated events are skipped unparsed.

    Async on purpose: FastStream runs a sync filter in a worker thread, once per message and
    handler, which made the filter the most expensive step of a busy consumer.
    """
    wanted = frozenset(cls.event_type() for cls in classes)

    async def matches(msg: StreamMessage[Any]) -> bool:
        return msg.headers.get(HEADER_TYPE) in wanted

    return matches


Subscriber = DefaultSubscriber | ConcurrentBetweenPartitionsSubscriber


def consume(
    router: KafkaRouter,
    kafka: KafkaSettings,
    topic: Topic,
    group: str,
    *,
    max_workers: int = 1,
) -> Subscriber:
    """A subscriber the simfleet way: explicit ACK (after the handler; failures go to the DLQ
    middleware), earliest offset for a new group, prefixed names; ``max_workers`` > 1 runs
    partitions concurrently while each partition stays in order."""
    consumer_started(f"{kafka.topic_prefix}{group}")
    return router.subscriber(
        topic.full_name(kafka.topic_prefix),
        group_id=f"{kafka.topic_prefix}{group}",
        ack_policy=AckPolicy.ACK,
        auto_offset_reset="earliest",
        session_timeout_ms=kafka.kafka_session_timeout_ms,
        heartbeat_interval_ms=kafka.kafka_heartbeat_interval_ms,
        max_workers=max_workers,
    )


# A consumer nobody waits on asks the broker to hold its fetch until this much is there (or the
# fetch wait passed): Apache Kafka answers a fetch at its first record, so under a steady trickle
# each batch was a few records, each a Postgres transaction and an offset commit. Tansu holds
# every fetch for its whole wait anyway.
GATHER_BYTES = 256 * 1024


def consume_batches(
    router: KafkaRouter,
    kafka: KafkaSettings,
    topics: Sequence[Topic],
    group: str,
    *,
    wait_ms: int = 50,
    fetch_wait_ms: int = 500,
    gather_bytes: int = 1,
    max_poll_interval_ms: int = 300_000,
) -> Any:
    """A batch subscriber the simfleet way (webhooks, endpoint health, silence, verification
    replies): up to 500 records handed over undecoded — the handler decodes them one by one
    (``infra.dead_letters.decode_wanted``), so one bad record cannot fail the batch — and a batch
    whose handler raised is read again (Postgres or the broker away) rather than committed
    past; the handled ones' offsets are committed at most once a second (``infra.commit_pacing``:
    a handler must be safe to run again on a batch it already handled). ``wait_ms`` bounds how long a batch is gathered, ``fetch_wait_ms`` how long one fetch
    idles on the broker (lower it where a waiting record is awaited by someone), ``gather_bytes``
    how much the broker waits for within that (``GATHER_BYTES`` where nobody waits: a record
    then waits up to ``fetch_wait_ms``)."""
    consumer_started(f"{kafka.topic_prefix}{group}")
    return router.subscriber(
        *(t.full_name(kafka.topic_prefix) for t in topics),
        group_id=f"{kafka.topic_prefix}{group}",
        batch=True,
        max_records=500,
        batch_timeout_ms=wait_ms,
        fetch_max_wait_ms=fetch_wait_ms,
        fetch_min_bytes=gather_bytes,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        session_timeout_ms=kafka.kafka_session_timeout_ms,
        heartbeat_interval_ms=kafka.kafka_heartbeat_interval_ms,
        max_poll_interval_ms=max_poll_interval_ms,
        parser=paced_commits(),
        decoder=_undecoded,
    )


async def _undecoded(_msg: StreamMessage[Any]) -> None:
    return None


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event already written as its record: what ``Bus`` would make of the model (value,
    key, headers), made without one where an event is produced per delivery (the webhook hot
    path). Whoever builds it holds it to ``codec.encode`` and ``codec.headers_for`` in tests."""

    topic: Topic
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def encoded(event: Event) -> EncodedEvent:
    """The record ``Bus`` writes for ``event``: its topic, subject as key, CloudEvents headers."""
    headers = [(name, text.encode()) for name, text in codec.headers_for(event).items()]
    return EncodedEvent(
        topic_for_type(event.type), event.subject.encode(), codec.encode(event), headers
    )


class Bus:
    """Publishes events to their topic, keyed by subject, with CloudEvents headers."""

    def __init__(
        self,
        broker: KafkaBroker,
        prefix: str = "",
        timeout_s: float = 15.0,
        *,
        window_s: float = 0.0,
    ) -> None:
        """``window_s`` > 0: concurrent ``emit_many`` calls go out together, at most one
        produce round per window (``infra.produce_window``; the gateway bridge)."""
        self._broker = broker
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._window: ProduceWindow[EncodedEvent, Ack] | None = (
            ProduceWindow(window_s) if window_s > 0 else None
        )

    def topic_name(self, event: Event) -> str:
        return topic_for_type(event.type).full_name(self._prefix)

    def encoded_topic_name(self, record: EncodedEvent) -> str:
        return record.topic.full_name(self._prefix)

    async def emit(self, event: Event) -> None:
        await self.emit_many((event,))

    async def emit_many(self, events: Iterable[Event]) -> None:
        """Returns once the broker acknowledged every event (acks=all); raises BrokerUnavailable."""
        send = self._send_each if self._window is None else self._send_windowed
        await self._acknowledged(send, list(events))

    async def emit_encoded(self, records: Sequence[EncodedEvent]) -> None:
        """``emit_many`` for events already encoded (``EncodedEvent``)."""
        await self._acknowledged(self._send_encoded, records)

    async def _acknowledged(
        self,
        send: Callable[[Sequence[_T], AIOKafkaProducer | None], Awaitable[list[Ack]]],
        items: Sequence[_T],
    ) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                producer = _connected_producer(self._broker)  # once per call, not per event
                pending = await send(items, producer)
                # records of one batch share its future: each awaited once
                await asyncio.gather(*{id(ack): ack for ack in pending if ack is not None}.values())
        except (TimeoutError, OSError, IncorrectState) as err:
            raise BrokerUnavailable(str(err) or type(err).__name__) from err
        except SEQUENCE_LOST as err:
            self._restart_sequence(err)
            raise BrokerUnavailable(f"{type(err).__name__}: {err}") from err
        except Exception as err:
            if type(err).__module__.startswith(("aiokafka", "kafka")):
                raise BrokerUnavailable(f"{type(err).__name__}: {err}") from err
            raise

    def _restart_sequence(self, err: Exception) -> None:
        """Without it every later send to the partition fails the same way, for good."""
        if producer := _connected_producer(self._broker):
            restart_sequence(producer, type(err).__name__)

    async def _send_each(
        self, events: Sequence[Event], producer: AIOKafkaProducer | None
    ) -> list[Ack]:
        return [await self._send(event, producer) for event in events]

    async def _send_windowed(
        self, events: Sequence[Event], producer: AIOKafkaProducer | None
    ) -> list[Ack]:
        if self._window is None or producer is None:
            return await self._send_each(events, producer)

        async def send_all(records: Sequence[EncodedEvent]) -> list[Ack]:
            return await self._send_encoded(records, producer)

        return await self._window.submit([encoded(event) for event in events], send_all)

    async def _send(self, event: Event, producer: AIOKafkaProducer | None) -> Ack:
        """Hands the event to the producer; the future resolves when the broker acknowledged
        (None from the in-memory test broker, which delivers at once)."""
        topic, value, key = self.topic_name(event), codec.encode(event), event.subject.encode()
        headers = codec.headers_for(event)
        if producer is not None:
            encoded = [(name, text.encode()) for name, text in headers.items()]
            future: asyncio.Future[Any] = await producer.send(
                topic, value, key=key, headers=encoded
            )
            return future
        sent: asyncio.Future[Any] | None = await self._broker.publish(
            value,
            topic,
            key=key,
            headers=headers,
            correlation_id=event.correlationid,
            no_confirm=True,
        )
        return sent

    async def _send_encoded(
        self, records: Sequence[EncodedEvent], producer: AIOKafkaProducer | None
    ) -> list[Ack]:
        """Each record's acknowledgement. Appended to one record batch per partition, each handed
        over whole and closed (it leaves at once, in one request with the others): a delivery
        group of the webhook hot path, a bridge window, cost an append per record instead of a
        ``send`` (partition look-up, a future and an accumulator call each). Placed as ``send``
        places them."""
        if producer is None:
            return [await self._publish_encoded(record) for record in records]
        by_partition: dict[tuple[str, int], list[int]] = {}
        partitions_of: dict[str, list[int]] = {}
        for index, record in enumerate(records):
            topic = self.encoded_topic_name(record)
            partitions = partitions_of.get(topic)
            if partitions is None:
                partitions = partitions_of[topic] = sorted(await producer.partitions_for(topic))
            partition = placed_by_key(record.key, partitions, partitions)
            by_partition.setdefault((topic, partition), []).append(index)
        acks: list[Ack] = [None] * len(records)
        for (topic, partition), indexes in by_partition.items():
            batch = producer.create_batch()
            in_batch: list[int] = []
            for index in indexes:
                record = records[index]
                if batch.append(key=record.key, value=record.value, timestamp=None,
                                headers=record.headers) is None:  # fmt: skip
                    ack = await _handed_over(producer, batch, topic, partition)
                    for done in in_batch:
                        acks[done] = ack
                    batch, in_batch = producer.create_batch(), []
                    batch.append(key=record.key, value=record.value, timestamp=None,
                                 headers=record.headers)  # fmt: skip
                in_batch.append(index)
            ack = await _handed_over(producer, batch, topic, partition)
            for done in in_batch:
                acks[done] = ack
        return acks

    async def _publish_encoded(self, record: EncodedEvent) -> Ack:
        """Through FastStream (the in-memory test broker, or before connect)."""
        headers = {name: value.decode() for name, value in record.headers}
        sent: asyncio.Future[Any] | None = await self._broker.publish(
            record.value,
            self.encoded_topic_name(record),
            key=record.key,
            headers=headers,
            correlation_id=headers[HEADER_CORRELATION],
            no_confirm=True,
        )
        return sent

    async def publish_raw(
        self, topic: str, value: bytes, *, key: bytes | None, headers: dict[str, str]
    ) -> None:
        """For records that are not events (dead letters): published as they are."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._broker.publish(value, topic, key=key, headers=headers)
        except (TimeoutError, OSError, IncorrectState) as err:
            raise BrokerUnavailable(f"publishing to {topic}: {type(err).__name__}") from err
        except SEQUENCE_LOST as err:
            self._restart_sequence(err)
            raise BrokerUnavailable(f"publishing to {topic}: {type(err).__name__}") from err


async def _handed_over(
    producer: AIOKafkaProducer, batch: Any, topic: str, partition: int
) -> asyncio.Future[Any]:
    batch.close()  # no linger: whoever called gathered the records already
    ack: asyncio.Future[Any] = await producer.send_batch(batch, topic, partition=partition)
    return ack


def _connected_producer(broker: KafkaBroker) -> AIOKafkaProducer | None:
    """The aiokafka producer under FastStream's publish, when the broker is connected to Kafka.

    Sending through it directly costs a third less CPU per event than ``broker.publish`` (its
    per-call middleware and command objects; measured by bench/bench_bridge.py), which is the
    bridge's hot path. None for the in-memory test broker or before connect: then events go
    through ``broker.publish`` as before. FastStream keeps the producer in private attributes,
    so this looks them up defensively; tests/integration/test_bus.py covers both paths.
    """
    state = getattr(getattr(broker, "_producer", None), "_producer", None)
    try:
        producer = getattr(state, "producer", None)
    except IncorrectState:  # FastStream's "not connected" state raises instead
        return None
    return producer if isinstance(producer, AIOKafkaProducer) else None
