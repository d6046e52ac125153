"""Reading a projection's batches: Kafka records → decoded ``Record``s, a slice at a time.

The runner (``projections.runner``) applies what this module reads. A live projection's fetch
waits on the broker for its gather window (or 256 KiB); a batch is what is buffered then, up to
``max_records``, fetched and decoded in slices of ``DECODE_SLICE`` records, so the batch being
applied meanwhile gets its answers from Postgres in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from events import EventDecodeError
from events.codec import Decoder, decode
from events.envelope import Event
from infra import gc_tuning
from infra.kafka import GATHER_BYTES
from infra.kafka_address import servers
from infra.kafka_security import client_options
from infra.settings import KafkaSettings

# A batch of 2,000 records, one more decoded while it is applied and one waiting: the events
# in flight stay fewer than the collector's young generation (infra.gc_tuning), so in a
# catch-up their objects are freed before any collection walks them, and a rebuild's memory
# stays low. With 10,000 (and two waiting) collections walked every record about twice, a
# fifth of the projector's CPU, and the replay command peaked at 270 MiB against 136 MiB.
MAX_RECORDS = 2_000
QUEUED_BATCHES = 1
DECODE_SLICE = 100  # records unpacked and decoded between two turns of the event loop
# per partition and fetch: ~750 SMS events; aiokafka holds a fetch of every partition at once
PARTITION_FETCH_BYTES = 1024 * 1024


class Record(NamedTuple):
    """An event and where it was read (a tuple: made hundreds of thousands of times a catch-up,
    four times cheaper than a frozen dataclass).

    ``kept`` is the decoded event, or only what its projection keeps of it (``Compacting``);
    ``event`` then reads the event again from the value (a dead letter: the slow path). The
    headers are kept as read and decoded only when asked for: a catch-up reads hundreds of
    thousands of records and needs none of them."""

    kept: object
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    raw_headers: Sequence[tuple[str, bytes]] = ()

    @property
    def event(self) -> Event:
        if isinstance(self.kept, Event):
            return self.kept
        return decode(self.value)  # validated as its topic's when read: it decodes again

    @property
    def headers(self) -> dict[str, str]:
        return {k: v.decode(errors="replace") for k, v in self.raw_headers}


Batch = dict[TopicPartition, list[ConsumerRecord[Any, Any]]]


def unseen(raw: Batch, held: dict[TopicPartition, int]) -> Batch:
    """The records of ``raw`` past those already held of each partition (a seek back in
    between reads some again); ``held`` moves on to the new last offsets."""
    fresh: Batch = {}
    for tp, records in raw.items():
        after = held.get(tp, -1)
        new = [r for r in records if r.offset > after]
        if new:
            fresh[tp] = new
            held[tp] = new[-1].offset
    return fresh


@dataclass(frozen=True, slots=True)
class Fetched:
    """A batch as read, decoded off the critical path while the previous batch is applied.
    Only the records, the last offset of each partition and what could not be decoded are
    kept: aiokafka's own record objects go as soon as the batch is decoded."""

    last: dict[TopicPartition, int]
    records: list[Record]
    undecodable: list[tuple[ConsumerRecord[Any, Any], EventDecodeError]]

    @staticmethod
    def joined(parts: Sequence[Fetched]) -> Fetched:
        """Slices read one after the other as one batch (a partition's later slice has its
        later offsets)."""
        if len(parts) == 1:
            return parts[0]
        last: dict[TopicPartition, int] = {}
        records: list[Record] = []
        undecodable: list[tuple[ConsumerRecord[Any, Any], EventDecodeError]] = []
        for part in parts:
            last.update(part.last)
            records += part.records
            undecodable += part.undecodable
        return Fetched(last, records, undecodable)

    def only(self, topics: Container[str]) -> Fetched:
        """What of the batch was read from ``topics`` (one projection's part of a shared batch)."""
        return Fetched(
            {tp: offset for tp, offset in self.last.items() if tp.topic in topics},
            [r for r in self.records if r.topic in topics],
            [(r, err) for r, err in self.undecodable if r.topic in topics],
        )

    @staticmethod
    def decode(
        raw: Batch,
        decoders: Mapping[str, Decoder],
        compacts: Mapping[str, Callable[[Event], object]] | None = None,
    ) -> Fetched:
        """Each record read by its topic's own decoder: a type that does not belong on the
        topic is refused like a broken value (parked), so a projection sees only its union.
        ``compacts``: per topic, what its one projection keeps of each event (the event itself
        for a topic not named)."""
        records, undecodable, last = [], [], {}
        compacts = compacts or {}
        # the collector would walk the batch's new objects, which all outlive this block, over
        # and over while it runs; an event compacted away is freed here, never walked
        with gc_tuning.collection_paused():
            for tp, batch in raw.items():
                last[tp] = batch[-1].offset
                decoder = decoders[tp.topic]
                compact = compacts.get(tp.topic)
                for r in batch:
                    try:
                        event = decoder.decode(r.value)
                    except EventDecodeError as err:
                        undecodable.append((r, err))
                        continue
                    kept = event if compact is None else compact(event)
                    records.append(
                        Record(kept, r.topic, r.partition, r.offset, r.key, r.value, r.headers)
                    )
        return Fetched(last, records, undecodable)


def projection_consumer(
    bootstrap: str, kafka: KafkaSettings, *, group_id: str | None, max_records: int, gather_ms: int
) -> AIOKafkaConsumer:
    """A projection's consumer: it commits only after the rows are in Postgres, and starts from
    the beginning where Postgres holds no checkpoint. ``group_id`` None: no group (a rebuild).

    ``gather_ms`` > 0: each fetch waits on the broker until that long passed or 256 KiB are
    there. Answered at its first record instead, a busy projection fetched again at every
    produce that reached the broker (~80 fetches/s each at 900 SMS/s, five projections busy):
    ~150 µs of CPU a fetch here and as much in the broker, for batches of a few records. Over a
    ladder at 900 SMS/s a 100 ms window took the projector from ~360 to ~230 µs per SMS. An idle
    projection now fetches once a window (Tansu, which holds every fetch for its whole wait,
    was fetching every 20 ms). 0: answered at the first record (a rebuild, tests)."""
    return AIOKafkaConsumer(
        bootstrap_servers=servers(bootstrap),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=kafka.kafka_session_timeout_ms,
        heartbeat_interval_ms=kafka.kafka_heartbeat_interval_ms,
        fetch_max_wait_ms=gather_ms or kafka.kafka_fetch_wait_ms,
        fetch_min_bytes=GATHER_BYTES if gather_ms else 1,
        max_poll_records=max_records,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        **client_options(kafka),
    )


class BatchReader:
    """Reads batches off ``consumer`` and decodes them with each topic's decoder, ahead of the
    batch being applied."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        decoders: Mapping[str, Decoder],
        compacts: Mapping[str, Callable[[Event], object]],
        *,
        max_records: int,
    ) -> None:
        self._consumer = consumer
        self._decoders = decoders
        self._compacts = compacts
        self._max_records = max_records
        self._slice_records = min(DECODE_SLICE, max_records)

    async def fetch_into(self, fetched: asyncio.Queue[Fetched]) -> None:
        """Reads until cancelled; the queue's bound holds reading back while batches wait."""
        while True:
            raw = await self._consumer.getmany(timeout_ms=200, max_records=self._slice_records)
            if raw:
                await fetched.put(await self.read_batch(raw))

    async def read_batch(self, first: Batch) -> Fetched:
        """A batch: what is buffered after ``first``, up to ``max_records``, read and decoded a
        slice at a time (the broker gathered it: ``projection_consumer``).

        Slices: unpacking and decoding a whole batch at once held the event loop for tens of
        milliseconds while the batch being applied waited for its answers from Postgres (ten
        round trips a batch), and Postgres, done with them, sat idle. A rebalance in between
        seeks back to the checkpoint: records already held must not come twice into one batch
        (the checkpoint filter only works across batches)."""
        held = {tp: records[-1].offset for tp, records in first.items() if records}
        parts = [Fetched.decode(first, self._decoders, self._compacts)]
        read = sum(map(len, first.values()))
        while read < self._max_records:
            await asyncio.sleep(0)  # the batch being applied gets its answers in between
            raw = await self._consumer.getmany(
                timeout_ms=0, max_records=min(self._slice_records, self._max_records - read)
            )
            fresh = unseen(raw, held)
            if fresh:
                parts.append(Fetched.decode(fresh, self._decoders, self._compacts))
                read += sum(map(len, fresh.values()))
            elif not raw:
                break  # nothing more buffered: what there is goes now
        return Fetched.joined(parts)
