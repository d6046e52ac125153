"""The projection engine: Kafka batches → one Postgres transaction (rows + checkpoints) → commit.

A projection says which topics it reads and how a batch of events changes its tables. The
runner consumes with aiokafka ``getmany`` (batch consumption at ~100k records/s, where a
per-message FastStream handler manages ~640/s; reading and decoding is ``projections.batches``),
applies the batch and upserts each partition's last offset into ``projection_checkpoints``
(``projections.checkpoints``) in the same transaction, and only then commits to Kafka (at most
once a second: Kafka's offsets only show how far the group is). On every
partition assignment it seeks to the Postgres checkpoint, so a crash between the two commits
re-reads records whose effects are already in the tables — and skips them.

One runner may carry several projections (the projector carries them all): one consumer, one
fetch per window for all of them, each event decoded once, and each projection's part of a
batch applied in its own transaction with its own checkpoints, side by side. On assignment a
partition is sought to the lowest checkpoint of the projections reading it; each skips what
its checkpoint says it holds. Ten consumers had cost ten fetches a window, ten group
memberships and ten decodings of ``sms.inbound`` (read by three).

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
from typing import Protocol, runtime_checkable

import asyncpg
import structlog
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from events.codec import decoder_for
from events.envelope import Event
from events.topics import Topic
from infra.commit_pacing import CommitPacer
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


@dataclass(frozen=True, slots=True)
class _Member:
    """One projection of a runner: the topics it reads, where its dead letters go."""

    projection: Projection
    topics: frozenset[str]
    dead: DeadLetters
    reads_all: bool  # every topic of the runner: a batch is all its own

    @property
    def name(self) -> str:
        return self.projection.name


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
        projections: Projection | Sequence[Projection],
        *,
        bootstrap: str,
        kafka: KafkaSettings,
        pool: asyncpg.Pool,
        dead_letters: DeadLetters | Mapping[str, DeadLetters],
        max_records: int = MAX_RECORDS,
        retry_delay_s: float = 1.0,
        on_batch: Callable[[int], None] | None = None,
        group_id: str | None = None,
        in_group: bool = True,
    ) -> None:
        """``projections``: one, or several sharing this runner's consumer; ``dead_letters``
        then by projection name. The group is ``projection.<name>`` for one, ``projector`` for
        several, unless ``group_id`` says.

        ``in_group=False`` (a rebuild): this runner reads every partition itself, so there is
        no group to join (a join waits out the broker's rebalance delay) and no Kafka offset to
        commit; the Postgres checkpoints are its only position, as they are the truth anyway."""
        chosen = tuple(projections) if isinstance(projections, Sequence) else (projections,)
        prefix = kafka.topic_prefix
        topics = {t.full_name(prefix): t for p in chosen for t in p.topics}
        self.topic_names = list(topics)
        self._members = tuple(
            _Member(
                p,
                frozenset(t.full_name(prefix) for t in p.topics),
                dead_letters if isinstance(dead_letters, DeadLetters) else dead_letters[p.name],
                reads_all={t.full_name(prefix) for t in p.topics} == set(topics),
            )
            for p in chosen
        )
        self.name = chosen[0].name if len(chosen) == 1 else "projector"
        self._pool = pool
        self._retry_delay_s = retry_delay_s
        self._on_batch = on_batch
        self._in_group = in_group
        self.assigned = asyncio.Event()  # the group joined: this runner has its partitions
        group = group_id or f"{prefix}{'projection.' if len(chosen) == 1 else ''}{self.name}"
        self._consumer = projection_consumer(
            bootstrap, kafka, group_id=group if in_group else None, max_records=max_records,
            gather_ms=kafka.kafka_projection_gather_ms if in_group else 0,
        )  # fmt: skip
        # without a group there is no Kafka offset to commit
        self._pacer = CommitPacer(self._consumer, KAFKA_COMMIT_EVERY_S) if in_group else None
        self._reader = BatchReader(
            self._consumer,
            {name: decoder_for(t) for name, t in topics.items()},
            _compacts(self._members),
            max_records=max_records,
        )

    async def seek_to_checkpoints(self, assigned: set[TopicPartition]) -> None:
        """Each partition from the lowest checkpoint of the projections reading it (from the
        beginning where one holds none)."""
        async with self._pool.acquire() as conn:
            done = [(m, await checkpoints.positions(conn, m.name)) for m in self._members]
        for tp in assigned:
            held = [d.get((tp.topic, tp.partition)) for m, d in done if tp.topic in m.topics]
            if not held or None in held:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, min(o for o in held if o is not None) + 1)
        log.debug("projection_assigned", projection=self.name, partitions=len(assigned))
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
                await asyncio.wait({next_batch, fetcher}, return_when=asyncio.FIRST_COMPLETED)
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
            if self._pacer is not None:
                self._pacer.close()
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
        """Each projection's part of the batch applied (side by side, each in its own
        transaction), then the batch's offsets committed."""
        parts = [(m, batch if m.reads_all else batch.only(m.topics)) for m in self._members]
        parts = [(m, part) for m, part in parts if part.last]
        if len(parts) == 1:
            applied = [await self._apply_waiting_out_outages(*parts[0])]
        else:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._apply_waiting_out_outages(*p)) for p in parts]
            applied = [t.result() for t in tasks]
        await self.commit_kafka({tp: offset + 1 for tp, offset in batch.last.items()})
        for (member, part), count in zip(parts, applied, strict=True):
            self._report(member, part, count)
        if self._on_batch is not None:
            self._on_batch(sum(applied))

    async def _apply_waiting_out_outages(self, member: _Member, batch: Fetched) -> int:
        while True:
            try:
                return await self._apply_durably(member, batch)
            except Exception as err:
                if not is_outage(err):
                    raise  # the runner's own statements failed: a bug, the process stops
                log.warning(
                    "projection_waiting_out_outage",
                    projection=member.name,
                    error=f"{type(err).__name__}: {err}",
                )
                await asyncio.sleep(self._retry_delay_s)

    def _report(self, member: _Member, batch: Fetched, applied: int) -> None:
        consumer = f"projection.{member.name}"
        EVENTS_CONSUMED.labels(consumer).inc(applied)
        assigned = self._consumer.assignment()
        for tp, offset in batch.last.items():
            if tp not in assigned:
                continue  # revoked by a rebalance meanwhile: its new owner reports its lag
            end = self._consumer.highwater(tp)
            if end is not None:
                CONSUMER_LAG.labels(consumer, tp.topic, tp.partition).set(end - offset - 1)

    async def commit_kafka(self, offsets: dict[TopicPartition, int]) -> None:
        """Sends the positions to Kafka at most once per ``KAFKA_COMMIT_EVERY_S`` (and a second
        after the last batch): they only say how far the group is (lag), Postgres holds where it
        is; a failed commit only means re-reading records the checkpoints skip."""
        if self._pacer is not None:
            await self._pacer.reached(offsets)

    async def commit_unsent(self) -> None:
        if self._pacer is not None:
            await self._pacer.flush()

    async def _apply_durably(self, member: _Member, batch: Fetched) -> int:
        """The batch and its checkpoints in one transaction. Tried first without a savepoint
        (two round trips a batch less); an event that fails it has the batch applied again, each
        event on a savepoint of its own. A batch holding an undecodable record goes that way at
        once: it is parked (a Kafka publish) and must not be parked twice."""
        if not batch.undecodable:
            try:
                return await self._apply_in_one(member, batch, isolating=False)
            except Exception as err:
                if is_outage(err):
                    raise
        return await self._apply_in_one(member, batch, isolating=True)

    async def _apply_in_one(self, member: _Member, batch: Fetched, *, isolating: bool) -> int:
        name = member.name
        async with self._pool.acquire() as conn, conn.transaction():
            done = await checkpoints.lock(conn, name, batch.last)

            def fresh(topic: str, partition: int, offset: int) -> bool:
                return offset > done.get((topic, partition), -1)

            for r, err in batch.undecodable:
                if fresh(r.topic, r.partition, r.offset):
                    await member.dead.park(
                        r, headers=headers_of(r), error=err, event_id=err.event_id
                    )
            records = [r for r in batch.records if fresh(r.topic, r.partition, r.offset)]
            if records and isolating:
                await _apply_isolating_poison(member, conn, records)
            elif records:
                await member.projection.apply(conn, records)
            last = {(tp.topic, tp.partition): offset for tp, offset in batch.last.items()}
            await checkpoints.advance(conn, name, last)
            return len(records)


def _compacts(members: Sequence[_Member]) -> dict[str, Callable[[Event], object]]:
    """Per topic read by one projection only, what that projection keeps of an event; a topic
    shared by several keeps the whole event (each projection takes what it needs)."""
    readers: dict[str, list[Projection]] = {}
    for member in members:
        for topic in member.topics:
            readers.setdefault(topic, []).append(member.projection)
    return {
        topic: only.compact
        for topic, (only, *others) in readers.items()
        if not others and isinstance(only, Compacting)
    }


async def _apply_isolating_poison(
    member: _Member, conn: asyncpg.Connection, records: list[Record]
) -> None:
    projection = member.projection
    try:
        async with conn.transaction():
            await projection.apply(conn, records)
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
                await projection.apply(conn, [record])
        except Exception as err:
            if is_outage(err):
                raise
            await member.dead.park(
                record, headers=record.headers, error=err, event_id=record.event.id
            )
