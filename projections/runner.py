"""The projection engine: Kafka batches → one Postgres transaction (rows + checkpoints) → commit.

A projection says which topics it reads and how a batch of events changes its tables. The
runner consumes with aiokafka ``getmany`` (batch consumption at ~100k records/s, where a
per-message FastStream handler manages ~640/s), applies the batch and upserts each partition's
last offset into ``projection_checkpoints`` in the same transaction, and only then commits to
Kafka. On every partition assignment it seeks to the Postgres checkpoint, so a crash between
the two commits re-reads records whose effects are already in the tables — and skips them.

Failures are sorted by ``infra.outages``. Events that cannot be applied (unknown type, invalid
data, a violated constraint, a missing column) go to the DLQ and the partition moves on; an
outage (Postgres restarting, the network) is not the event's fault: the batch is retried until
Postgres answers, and nothing is committed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from events import EventDecodeError
from events.codec import Decoder, decode, decoder_for
from events.envelope import Event
from events.topics import Topic
from infra import gc_tuning
from infra.dead_letters import DeadLetters, headers_of
from infra.kafka_address import servers
from infra.kafka_security import client_options
from infra.metrics import CONSUMER_LAG, EVENTS_CONSUMED
from infra.outages import is_outage
from infra.settings import KafkaSettings

log = structlog.get_logger("simfleet.projections")

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

SELECT_CHECKPOINTS = """
SELECT topic, partition, "offset" FROM projection_checkpoints WHERE projection = $1
"""
# only the partitions of the batch: projectors sharing a group each hold their own partitions,
# and must not wait for each other's transactions
LOCK_CHECKPOINTS = """
SELECT topic, partition, "offset" FROM projection_checkpoints
WHERE projection = $1 AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))
FOR UPDATE
"""
UPSERT_CHECKPOINTS = """
INSERT INTO projection_checkpoints (projection, topic, partition, "offset")
SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS c(t, p, o)
ON CONFLICT (projection, topic, partition) DO UPDATE
SET "offset" = GREATEST(projection_checkpoints."offset", EXCLUDED."offset"), updated_at = now()
"""


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

    @staticmethod
    def decode(
        raw: Batch,
        decoders: Mapping[str, Decoder],
        compact: Callable[[Event], object] | None = None,
    ) -> Fetched:
        """Each record read by its topic's own decoder: a type that does not belong on the
        topic is refused like a broken value (parked), so a projection sees only its union.
        ``compact``: what the projection keeps of each event (the event itself without it)."""
        records, undecodable, last = [], [], {}
        # the collector would walk the batch's new objects, which all outlive this block, over
        # and over while it runs; an event compacted away is freed here, never walked
        with gc_tuning.collection_paused():
            for tp, batch in raw.items():
                last[tp] = batch[-1].offset
                decoder = decoders[tp.topic]
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


class Projection(Protocol):
    name: str
    topics: tuple[Topic, ...]
    tables: tuple[str, ...]

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None: ...


@runtime_checkable
class Compacting(Protocol):
    """A projection that needs only a little of each event (a row) says what, and the runner
    keeps only that from the moment the batch is decoded: fewer live objects per event for
    the allocator and the collector, and less memory per batch. ``apply`` then finds it in
    ``Record.kept`` (or a whole event there, when given one: a rebuild from the archive)."""

    def compact(self, event: Event) -> object: ...


class _ResumeFromCheckpoints(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ProjectionRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:  # noqa: ARG002
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner.seek_to_checkpoints(assigned)


class ProjectionRunner:
    def __init__(
        self,
        projection: Projection,
        *,
        bootstrap: str,
        kafka: KafkaSettings,
        pool: asyncpg.Pool,
        dead_letters: DeadLetters,
        max_records: int = MAX_RECORDS,
        retry_delay_s: float = 1.0,
        on_batch: Callable[[int], None] | None = None,
        group_id: str | None = None,
        in_group: bool = True,
    ) -> None:
        """``in_group=False`` (a rebuild): this runner reads every partition itself, so there is
        no group to join (a join waits out the broker's rebalance delay) and no Kafka offset to
        commit; the Postgres checkpoints are its only position, as they are the truth anyway."""
        self.projection = projection
        self._pool = pool
        self._dead = dead_letters
        self._max_records = max_records
        self._gather_s = kafka.kafka_projection_gather_ms / 1000 if in_group else 0.0
        self._retry_delay_s = retry_delay_s
        self._on_batch = on_batch
        self._in_group = in_group
        self.topic_names = [t.full_name(kafka.topic_prefix) for t in projection.topics]
        self.decoders = {t.full_name(kafka.topic_prefix): decoder_for(t) for t in projection.topics}
        self._compact = projection.compact if isinstance(projection, Compacting) else None
        self.assigned = asyncio.Event()  # the group joined: this runner has its partitions
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=servers(bootstrap),
            group_id=(group_id or f"{kafka.topic_prefix}projection.{projection.name}")
            if in_group
            else None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=kafka.kafka_session_timeout_ms,
            heartbeat_interval_ms=kafka.kafka_heartbeat_interval_ms,
            fetch_max_wait_ms=kafka.kafka_fetch_wait_ms,
            max_poll_records=max_records,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
            **client_options(kafka),
        )

    async def seek_to_checkpoints(self, assigned: set[TopicPartition]) -> None:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(SELECT_CHECKPOINTS, self.projection.name)
        done = {(r["topic"], r["partition"]): r["offset"] for r in rows}
        for tp in assigned:
            offset = done.get((tp.topic, tp.partition))
            if offset is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, offset + 1)
        log.debug("projection_assigned", projection=self.projection.name, partitions=len(assigned))
        self.assigned.set()

    async def run(self) -> None:
        """Consumes until cancelled. Fetching the next batch overlaps applying this one."""
        await self._start_consuming()
        fetched: asyncio.Queue[Fetched] = asyncio.Queue(maxsize=QUEUED_BATCHES)
        fetcher = asyncio.create_task(self._fetch_into(fetched))
        next_batch: asyncio.Future[Fetched] | None = None
        try:
            while True:
                next_batch = asyncio.ensure_future(fetched.get())
                await asyncio.wait({next_batch, fetcher}, return_when=asyncio.FIRST_COMPLETED)
                if fetcher.done():
                    await fetcher  # it failed: surface its error
                await self.process(next_batch.result())
        finally:
            for task in (next_batch, fetcher):
                if task is not None and not task.done():
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetcher
            await self._consumer.stop()

    async def _start_consuming(self) -> None:
        if self._in_group:
            self._consumer.subscribe(self.topic_names, listener=_ResumeFromCheckpoints(self))
            await self._consumer.start()
            return
        # without a group every partition of the topics is assigned here, once metadata came
        self._consumer.subscribe(self.topic_names)
        await self._consumer.start()
        while not self._consumer.assignment():  # noqa: ASYNC110  (aiokafka offers no event)
            await asyncio.sleep(0.01)
        await self.seek_to_checkpoints(set(self._consumer.assignment()))

    async def _fetch_into(self, fetched: asyncio.Queue[Fetched]) -> None:
        slice_records = min(DECODE_SLICE, self._max_records)
        while True:
            raw = await self._consumer.getmany(timeout_ms=200, max_records=slice_records)
            if raw:
                await fetched.put(await self._read_batch(raw))

    async def _read_batch(self, first: Batch) -> Fetched:
        """A batch: what is buffered after ``first``, up to ``max_records``, plus what arrives
        within ``gather_s`` of it, read and decoded a slice at a time.

        Gathering: under a steady trickle each batch would otherwise be a few records, and its
        transaction, checkpoint and Kafka commit cost more than its rows. Slices: unpacking and
        decoding a whole batch at once held the event loop for tens of milliseconds while the
        batch being applied waited for its answers from Postgres (ten round trips a batch), and
        Postgres, done with them, sat idle. A rebalance in between seeks back to the checkpoint:
        records already held must not come twice into one batch (the checkpoint filter only
        works across batches)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._gather_s
        slice_records = min(DECODE_SLICE, self._max_records)
        held = {tp: records[-1].offset for tp, records in first.items() if records}
        parts = [Fetched.decode(first, self.decoders, self._compact)]
        read = sum(map(len, first.values()))
        while read < self._max_records:
            await asyncio.sleep(0)  # the batch being applied gets its answers in between
            wait_ms = max(0, round((deadline - loop.time()) * 1000))
            raw = await self._consumer.getmany(
                timeout_ms=wait_ms, max_records=min(slice_records, self._max_records - read)
            )
            fresh = unseen(raw, held)
            if fresh:
                parts.append(Fetched.decode(fresh, self.decoders, self._compact))
                read += sum(map(len, fresh.values()))
            elif not raw and wait_ms == 0:
                break  # nothing more buffered and the window is over: what there is goes now
        return Fetched.joined(parts)

    async def process(self, batch: Fetched) -> None:
        while True:
            try:
                applied = await self._apply_durably(batch)
                break
            except Exception as err:
                if not is_outage(err):
                    raise  # the runner's own statements failed: a bug, the process stops
                log.warning(
                    "projection_waiting_out_outage",
                    projection=self.projection.name,
                    error=f"{type(err).__name__}: {err}",
                )
                await asyncio.sleep(self._retry_delay_s)
        await self.commit_kafka({tp: offset + 1 for tp, offset in batch.last.items()})
        consumer = f"projection.{self.projection.name}"
        EVENTS_CONSUMED.labels(consumer).inc(applied)
        assigned = self._consumer.assignment()
        for tp, offset in batch.last.items():
            if tp not in assigned:
                continue  # revoked by a rebalance meanwhile: its new owner reports its lag
            end = self._consumer.highwater(tp)
            if end is not None:
                CONSUMER_LAG.labels(consumer, tp.topic, tp.partition).set(end - offset - 1)
        if self._on_batch is not None:
            self._on_batch(applied)

    async def commit_kafka(self, offsets: dict[TopicPartition, int]) -> None:
        # Postgres holds the truth; a failed Kafka commit only means re-reading skipped records
        if not self._in_group:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as err:
            log.warning(
                "projection_commit_skipped", projection=self.projection.name, error=str(err)
            )

    async def _apply_durably(self, batch: Fetched) -> int:
        name = self.projection.name
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                LOCK_CHECKPOINTS,
                name,
                [tp.topic for tp in batch.last],
                [tp.partition for tp in batch.last],
            )
            done: dict[tuple[str, int], int] = {
                (r["topic"], r["partition"]): r["offset"] for r in rows
            }

            def fresh(topic: str, partition: int, offset: int) -> bool:
                return offset > done.get((topic, partition), -1)

            for r, err in batch.undecodable:
                if fresh(r.topic, r.partition, r.offset):
                    await self._dead.park(
                        r, headers=headers_of(r), error=err, event_id=err.event_id
                    )
            records = [r for r in batch.records if fresh(r.topic, r.partition, r.offset)]
            if records:
                await self._apply_isolating_poison(conn, records)
            last = {(tp.topic, tp.partition): offset for tp, offset in batch.last.items()}
            await conn.execute(
                UPSERT_CHECKPOINTS,
                name,
                [t for t, _ in last],
                [p for _, p in last],
                list(last.values()),
            )
            return len(records)

    async def _apply_isolating_poison(
        self, conn: asyncpg.Connection, records: list[Record]
    ) -> None:
        try:
            async with conn.transaction():
                await self.projection.apply(conn, records)
        except Exception as err:
            if is_outage(err):
                raise  # the whole batch is tried again once Postgres is back
        else:
            return
        # slow path, only after a failure: one savepoint per event finds the poison ones (a
        # missing column included: parked with its error, never waited on as an outage)
        for record in records:
            try:
                async with conn.transaction():
                    await self.projection.apply(conn, [record])
            except Exception as err:
                if is_outage(err):
                    raise
                await self._dead.park(
                    record, headers=record.headers, error=err, event_id=record.event.id
                )
