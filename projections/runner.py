"""The projection engine: Kafka batches → one Postgres transaction (rows + checkpoints) → commit.

A projection says which topics it reads and how a batch of events changes its tables. The
runner consumes with aiokafka ``getmany`` (batch consumption at ~100k records/s, where a
per-message FastStream handler manages ~640/s; reading and decoding is ``projections.batches``),
applies the batch and upserts each partition's last offset into ``projection_checkpoints``
(``projections.checkpoints``) in the same transaction, and only then commits to Kafka (at most
once a second: Kafka's offsets only show how far the group is). On every
partition assignment it seeks to the Postgres checkpoint, so a crash between the two commits
re-reads records whose effects are already in the tables — and skips them.

Failures are sorted by ``infra.outages``. Events that cannot be applied (unknown type, invalid
data, a violated constraint, a missing column) go to the DLQ and the partition moves on; an
outage (Postgres restarting, the network) is not the event's fault: the batch is retried until
Postgres answers, and nothing is committed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import asyncpg
import structlog
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from events.codec import decoder_for
from events.envelope import Event
from events.topics import Topic
from infra.dead_letters import DeadLetters, headers_of
from infra.metrics import CONSUMER_LAG, EVENTS_CONSUMED
from infra.outages import is_outage
from infra.settings import KafkaSettings
from projections import checkpoints
from projections.batches import (
    MAX_RECORDS,
    QUEUED_BATCHES,
    BatchReader,
    Fetched,
    Record,
    projection_consumer,
)

log = structlog.get_logger("simfleet.projections")
# A projection's Kafka offsets are sent at most this often (and when it goes idle or stops):
# a commit a batch was ~70 requests/s at 900 SMS/s for the projector, and as many writes for
# the broker, for a position nobody resumes from (the Postgres checkpoints are)
KAFKA_COMMIT_EVERY_S = 1.0
FINAL_COMMIT_S = 2.0


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
        await self._runner.commit_unsent()

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
        self._retry_delay_s = retry_delay_s
        self._on_batch = on_batch
        self._in_group = in_group
        self.topic_names = [t.full_name(kafka.topic_prefix) for t in projection.topics]
        self.assigned = asyncio.Event()  # the group joined: this runner has its partitions
        self._unsent: dict[TopicPartition, int] = {}  # applied, not yet committed to Kafka
        self._commit_due = 0.0  # event loop time
        group = group_id or f"{kafka.topic_prefix}projection.{projection.name}"
        self._consumer = projection_consumer(
            bootstrap, kafka, group_id=group if in_group else None, max_records=max_records,
            gather_ms=kafka.kafka_projection_gather_ms if in_group else 0,
        )  # fmt: skip
        self._reader = BatchReader(
            self._consumer,
            {t.full_name(kafka.topic_prefix): decoder_for(t) for t in projection.topics},
            projection.compact if isinstance(projection, Compacting) else None,
            max_records=max_records,
        )

    async def seek_to_checkpoints(self, assigned: set[TopicPartition]) -> None:
        async with self._pool.acquire() as conn:
            done = await checkpoints.positions(conn, self.projection.name)
        for tp in assigned:
            offset = done.get((tp.topic, tp.partition))
            if offset is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, offset + 1)
        log.debug("projection_assigned", projection=self.projection.name, partitions=len(assigned))
        self.assigned.set()

    async def run(self) -> None:
        """Consumes until cancelled. Fetching the next batch overlaps applying this one. The
        consumer is stopped however the run ends, a cancel during its start included (it
        would otherwise keep its connections and its place in the group)."""
        fetcher: asyncio.Task[None] | None = None
        next_batch: asyncio.Future[Fetched] | None = None
        try:
            await self._start_consuming()
            fetched: asyncio.Queue[Fetched] = asyncio.Queue(maxsize=QUEUED_BATCHES)
            fetcher = asyncio.create_task(self._reader.fetch_into(fetched))
            while True:
                next_batch = asyncio.ensure_future(fetched.get())
                # idle with offsets not yet sent to Kafka: they go when due
                while not (await asyncio.wait(
                    {next_batch, fetcher}, timeout=self._until_commit(),
                    return_when=asyncio.FIRST_COMPLETED,
                ))[0]:  # fmt: skip
                    await self.commit_unsent()
                if fetcher.done():
                    await fetcher  # it failed: surface its error
                await self.process(next_batch.result())
        finally:
            for task in (next_batch, fetcher):
                if task is not None and not task.done():
                    task.cancel()
            if fetcher is not None:
                # its own failure was raised in the loop already; the consumer is stopped below
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetcher
            # the last positions for the lag shown; a broker gone must not hold the stop
            with contextlib.suppress(Exception):
                async with asyncio.timeout(FINAL_COMMIT_S):
                    await self.commit_unsent()
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
        self._report(batch, applied)

    def _report(self, batch: Fetched, applied: int) -> None:
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
        """Sends the positions to Kafka at most once per ``KAFKA_COMMIT_EVERY_S``: they only
        say how far the group is (lag), Postgres holds where it is."""
        if not self._in_group:
            return
        self._unsent.update(offsets)
        if asyncio.get_running_loop().time() >= self._commit_due:
            await self.commit_unsent()

    async def commit_unsent(self) -> None:
        # Postgres holds the truth; a failed Kafka commit only means re-reading skipped records
        if not self._unsent:
            return
        offsets, self._unsent = self._unsent, {}
        self._commit_due = asyncio.get_running_loop().time() + KAFKA_COMMIT_EVERY_S
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as err:
            log.warning(
                "projection_commit_skipped", projection=self.projection.name, error=str(err)
            )

    def _until_commit(self) -> float | None:
        """Seconds until the unsent positions are due; None with none unsent."""
        if not self._unsent:
            return None
        return max(0.0, self._commit_due - asyncio.get_running_loop().time())

    async def _apply_durably(self, batch: Fetched) -> int:
        """The batch and its checkpoints in one transaction. Tried first without a savepoint
        (two round trips a batch less); an event that fails it has the batch applied again, each
        event on a savepoint of its own. A batch holding an undecodable record goes that way at
        once: it is parked (a Kafka publish) and must not be parked twice."""
        if not batch.undecodable:
            try:
                return await self._apply_in_one(batch, isolating=False)
            except Exception as err:
                if is_outage(err):
                    raise
        return await self._apply_in_one(batch, isolating=True)

    async def _apply_in_one(self, batch: Fetched, *, isolating: bool) -> int:
        name = self.projection.name
        async with self._pool.acquire() as conn, conn.transaction():
            done = await checkpoints.lock(conn, name, batch.last)

            def fresh(topic: str, partition: int, offset: int) -> bool:
                return offset > done.get((topic, partition), -1)

            for r, err in batch.undecodable:
                if fresh(r.topic, r.partition, r.offset):
                    await self._dead.park(
                        r, headers=headers_of(r), error=err, event_id=err.event_id
                    )
            records = [r for r in batch.records if fresh(r.topic, r.partition, r.offset)]
            if records and isolating:
                await self._apply_isolating_poison(conn, records)
            elif records:
                await self.projection.apply(conn, records)
            last = {(tp.topic, tp.partition): offset for tp, offset in batch.last.items()}
            await checkpoints.advance(conn, name, last)
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
