"""The typed event bus: events published to their topic, keyed by subject, with CloudEvents
headers, each call returning once the broker acknowledged every record (acks=all).

Producer: ``acks="all"`` and idempotent (a retried send is written once, in order), except on a
broker without InitProducerId (Tansu: ``KAFKA_IDEMPOTENCE=false``, set by the embedded Tansu).
Duplicates from a publisher that itself retries are still recognised by event id. A send failing
on a sequence gap gives the producer a new id (``infra.producer_sequence``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from faststream.exceptions import IncorrectState
from faststream.kafka import KafkaBroker

from events import codec
from events.envelope import Event
from events.topics import HEADER_CORRELATION, Topic, topic_for_type
from infra.kafka import placed_by_key
from infra.produce_window import ProduceWindow
from infra.producer_sequence import SEQUENCE_LOST, restart_sequence

_T = TypeVar("_T")
# resolves once the broker acknowledged (None where the in-memory test broker delivered at once)
Ack = asyncio.Future[Any] | None


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge a publish in time."""


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
        await self._acknowledged(self._send_events, list(events))

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
                # records of one batch share its future, and so may the callers of one produce
                # round: each awaited once, shielded (this call's deadline cancelling it would
                # cancel it for every other caller)
                acks = {id(ack): ack for ack in pending if ack is not None}.values()
                await asyncio.gather(*(asyncio.shield(ack) for ack in acks))
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

    async def _send_events(
        self, events: Sequence[Event], producer: AIOKafkaProducer | None
    ) -> list[Ack]:
        if self._window is not None and producer is not None:

            async def send_all(records: Sequence[EncodedEvent]) -> list[Ack]:
                return await self._send_encoded(records, producer)

            return await self._window.submit([encoded(event) for event in events], send_all)
        return [await self._send(event, producer) for event in events]

    async def _send(self, event: Event, producer: AIOKafkaProducer | None) -> Ack:
        """Hands the event to the producer; the future resolves when the broker acknowledged
        (None from the in-memory test broker, which delivers at once)."""
        record = encoded(event)
        if producer is None:
            return await self._publish_encoded(record)
        future: asyncio.Future[Any] = await producer.send(
            self.encoded_topic_name(record), record.value, key=record.key, headers=record.headers
        )
        return future

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
            batches: list[tuple[Any, list[int]]] = [(producer.create_batch(), [])]
            for index in indexes:
                record = records[index]
                # a full batch refuses the record (an empty one takes any): the next one holds it
                while batches[-1][0].append(key=record.key, value=record.value, timestamp=None,
                                            headers=record.headers) is None:  # fmt: skip
                    batches.append((producer.create_batch(), []))
                batches[-1][1].append(index)
            for batch, in_batch in batches:
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
