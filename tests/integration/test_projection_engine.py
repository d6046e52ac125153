import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from events.sms import SmsReceived
from events.topics import SMS_INBOUND, Topic
from infra.bus import Bus
from infra.dead_letters import DeadLetters
from infra.settings import Settings
from projections.archive import ArchiveProjection
from projections.batches import Record
from projections.runner import KAFKA_COMMIT_EVERY_S, ProjectionRunner
from projections.sms import InboundSmsProjection
from tests.support.eventually import eventually
from tests.support.positions import group_caught_up, projection_caught_up
from tests.support.projecting import running

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 4, 12, tzinfo=UTC)


def sms(i: int, body: str | None = None) -> SmsReceived:
    return SmsReceived.create(
        producer="simfleet/test",
        time=T0,
        gateway_id="gw-1",
        port=f"{i % 8 + 1}.01",
        sender="+15551230000",
        to=f"+1555987{i % 50:04d}",
        body=body or f"message {i}",
        received_at=T0 + timedelta(seconds=i),
    )


class CountingProjection:
    """Counts applications per event id: any event applied twice shows n = 2."""

    name = "counting"
    topics: tuple[Topic, ...] = (SMS_INBOUND,)
    tables: tuple[str, ...] = ("applied_events",)

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        for r in records:
            if r.event.type == "sms.received" and "poison" in r.event.data.body:  # type: ignore[attr-defined]
                raise ValueError("cannot apply a poison body")
        await conn.executemany(
            "INSERT INTO applied_events (event_id, n) VALUES ($1, 1) "
            "ON CONFLICT (event_id) DO UPDATE SET n = applied_events.n + 1",
            [(r.event.id,) for r in records],
        )


class CrashAfterPostgresCommit(ProjectionRunner):
    """Dies between the Postgres commit and the Kafka commit of its first batch."""

    async def commit_kafka(self, offsets: dict[TopicPartition, int]) -> None:
        raise RuntimeError("simulated crash before the Kafka commit")


@pytest.fixture
async def pool(pool: asyncpg.Pool) -> asyncpg.Pool:
    """The test's pool, with the table the test projection writes."""
    await pool.execute("CREATE TABLE applied_events (event_id text PRIMARY KEY, n int NOT NULL)")
    return pool


def runner_for(
    projection: Any,
    settings: Settings,
    kafka_bootstrap: str,
    pool: asyncpg.Pool,
    bus: Bus,
    *,
    cls: type[ProjectionRunner] = ProjectionRunner,
    group_id: str | None = None,
) -> ProjectionRunner:
    return cls(
        projection,
        bootstrap=kafka_bootstrap,
        kafka=settings.kafka,
        pool=pool,
        dead_letters=DeadLetters(bus, projection.name),
        group_id=group_id,
    )


async def count(pool: asyncpg.Pool, sql: str) -> int:
    return int(await pool.fetchval(sql))


async def test_events_become_rows_once_even_when_published_twice(
    settings: Settings, kafka_bootstrap: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    events = [sms(i) for i in range(300)]
    await bus.emit_many(events)
    await bus.emit_many(events[:100])  # a gateway retry: same ids again
    sms_runner = runner_for(InboundSmsProjection(), settings, kafka_bootstrap, pool, bus)
    archive = runner_for(ArchiveProjection(), settings, kafka_bootstrap, pool, bus)
    async with running(sms_runner), running(archive):
        await eventually(
            lambda: count(pool, "SELECT count(*) FROM inbound_sms"), until=lambda n: n >= 300
        )
        await eventually(
            lambda: count(pool, "SELECT count(*) FROM event_log"), until=lambda n: n >= 300
        )
        for name in ("inbound_sms", "archive"):  # every record read: no late duplicate left
            await projection_caught_up(pool, kafka_bootstrap, settings.kafka, name, SMS_INBOUND)
    assert await count(pool, "SELECT count(*) FROM inbound_sms") == 300
    assert await count(pool, "SELECT count(*) FROM event_log") == 300
    row = await pool.fetchrow("SELECT * FROM inbound_sms WHERE message_id = $1", events[7].id)
    assert row["to_number"] == events[7].data.to
    assert row["body"] == "message 7"
    logged = await pool.fetchrow("SELECT * FROM event_log WHERE id = $1", events[7].id)
    assert logged["type"] == "sms.received"
    assert logged["topic"] == f"{settings.kafka.topic_prefix}sms.inbound"
    assert logged["payload"]["data"]["body"] == "message 7"


async def test_poison_events_go_to_the_dlq_and_the_partition_keeps_flowing(
    settings: Settings, kafka_bootstrap: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    topic = SMS_INBOUND.full_name(settings.kafka.topic_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:  # all on partition 0, in this order: good, garbage, unknown type, unappliable, good
        await producer.send_and_wait(topic, sms(1).model_dump_json().encode(), partition=0)
        await producer.send_and_wait(topic, b"{not json", partition=0, headers=[("x", b"1")])
        unknown = sms(2).model_dump_json().replace('"sms.received"', '"sms.vanished"')
        await producer.send_and_wait(topic, unknown.encode(), partition=0)
        poison = sms(3, body="poison pill")
        await producer.send_and_wait(topic, poison.model_dump_json().encode(), partition=0)
        await producer.send_and_wait(topic, sms(4).model_dump_json().encode(), partition=0)
    finally:
        await producer.stop()

    runner = runner_for(CountingProjection(), settings, kafka_bootstrap, pool, bus)
    async with running(runner):
        await eventually(
            lambda: count(pool, "SELECT count(*) FROM applied_events"), until=lambda n: n == 2
        )
    assert await pool.fetchval("SELECT max(n) FROM applied_events") == 1

    dlq = AIOKafkaConsumer(
        f"{topic}.dlq", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await dlq.start()
    try:
        batch = await dlq.getmany(timeout_ms=5000)
    finally:
        await dlq.stop()
    letters = sorted(
        (r for rs in batch.values() for r in rs), key=lambda r: dict(r.headers)["dlq_offset"]
    )
    headers = [dict(r.headers) for r in letters]
    assert [h["dlq_offset"] for h in headers] == [b"1", b"2", b"3"]
    assert all(h["dlq_topic"] == topic.encode() for h in headers)
    assert b"not JSON" in headers[0]["dlq_error"]
    assert headers[0]["x"] == b"1"
    assert b"unknown event type" in headers[1]["dlq_error"]
    assert b"poison" in headers[2]["dlq_error"]
    assert letters[0].value == b"{not json"


async def test_a_crash_between_postgres_and_kafka_commits_applies_nothing_twice(
    settings: Settings, kafka_bootstrap: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    await bus.emit_many([sms(i) for i in range(200)])
    crashing = runner_for(
        CountingProjection(), settings, kafka_bootstrap, pool, bus, cls=CrashAfterPostgresCommit
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        await asyncio.wait_for(crashing.run(), 30)
    applied_before_restart = await count(pool, "SELECT count(*) FROM applied_events")
    assert applied_before_restart > 0

    await bus.emit_many([sms(i) for i in range(200, 300)])
    restarted = runner_for(CountingProjection(), settings, kafka_bootstrap, pool, bus)
    async with running(restarted):
        await eventually(
            lambda: count(pool, "SELECT count(*) FROM applied_events"), until=lambda n: n == 300
        )
    assert await pool.fetchval("SELECT max(n) FROM applied_events") == 1


async def test_resumes_from_postgres_checkpoints_not_kafka_offsets(
    settings: Settings, kafka_bootstrap: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    await bus.emit_many([sms(i) for i in range(50)])
    first = runner_for(InboundSmsProjection(), settings, kafka_bootstrap, pool, bus)
    async with running(first):
        await eventually(
            lambda: count(pool, "SELECT count(*) FROM inbound_sms"), until=lambda n: n == 50
        )
    checkpoints = await pool.fetch(
        "SELECT * FROM projection_checkpoints WHERE projection = 'inbound_sms'"
    )
    assert sum(r["offset"] + 1 for r in checkpoints) == 50

    # a row removed behind the projection's back must stay removed: a resume from Kafka's
    # committed offsets or from the beginning would not prove anything, so use a new group
    await pool.execute("DELETE FROM inbound_sms WHERE message_id = $1", sms(0).id)
    await bus.emit_many([sms(i) for i in range(50, 60)])
    second = runner_for(
        InboundSmsProjection(), settings, kafka_bootstrap, pool, bus, group_id="no-offsets-yet"
    )
    async with running(second):
        await eventually(
            lambda: count(pool, "SELECT count(*) FROM inbound_sms"), until=lambda n: n == 59
        )
        await projection_caught_up(
            pool, kafka_bootstrap, settings.kafka, "inbound_sms", SMS_INBOUND
        )
    assert await count(pool, "SELECT count(*) FROM inbound_sms") == 59


async def test_kafka_offsets_follow_in_few_commits_and_reach_the_end_once_idle(
    settings: Settings, kafka_bootstrap: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    """Kafka's offsets only tell how far the group is: sent once a second under load, not once
    a batch, and the last of them as soon as the projection idles (no lag left shown)."""
    batches: list[int] = []
    runner = ProjectionRunner(
        CountingProjection(), bootstrap=kafka_bootstrap, kafka=settings.kafka, pool=pool,
        dead_letters=DeadLetters(bus, "counting"), on_batch=batches.append,
    )  # fmt: skip
    commits: list[object] = []
    send = runner._consumer.commit

    async def counted(offsets: Any = None) -> None:
        commits.append(offsets)
        await send(offsets)

    runner._consumer.commit = counted
    async with running(runner):
        await runner.assigned.wait()
        started = asyncio.get_running_loop().time()
        for burst in range(12):  # a batch each, ~100 ms apart
            await bus.emit_many([sms(burst * 10 + i) for i in range(10)])
            await eventually(
                lambda: count(pool, "SELECT count(*) FROM applied_events"),
                until=((burst + 1) * 10).__eq__,
            )
            await asyncio.sleep(0.1)
        elapsed = asyncio.get_running_loop().time() - started
        await group_caught_up(
            kafka_bootstrap, settings.kafka, "projection.counting", SMS_INBOUND, within=5
        )
    assert len(batches) >= 12
    assert len(commits) <= elapsed / KAFKA_COMMIT_EVERY_S + 2 < len(batches)
    assert await pool.fetchval("SELECT max(n) FROM applied_events") == 1


async def test_under_a_trickle_the_broker_gathers_a_window_of_records_into_each_batch(
    settings: Settings, kafka_bootstrap: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    """A fetch waits on the broker for the gather window: an SMS every 20 ms for a second and a
    half makes a fetch and a batch per window, not one per SMS (a fetch answered at its first
    record costs as much CPU in the broker as here) — and a lone event is still applied within
    about a window."""
    gathering = settings.kafka.model_copy(update={"kafka_projection_gather_ms": 300})
    batches: list[int] = []
    runner = ProjectionRunner(
        CountingProjection(), bootstrap=kafka_bootstrap, kafka=gathering, pool=pool,
        dead_letters=DeadLetters(bus, "counting"), on_batch=batches.append,
    )  # fmt: skip
    fetches: list[float] = []
    client = runner._consumer._client
    send = client.send

    async def counted(node_id: int, request: Any, *args: Any, **kwargs: Any) -> Any:
        if type(request).__name__.startswith("FetchRequest"):
            fetches.append(asyncio.get_running_loop().time())
        return await send(node_id, request, *args, **kwargs)

    client.send = counted
    async with running(runner):
        await runner.assigned.wait()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(75):
            await bus.emit(sms(i))
            await asyncio.sleep(0.02)
        trickle_s = loop.time() - started
        await eventually(
            lambda: count(pool, "SELECT count(*) FROM applied_events"), until=(75).__eq__
        )
        assert sum(batches) == 75
        # the first fetch may be answered at once (one waiting since the group joined)
        assert len(batches) <= trickle_s / 0.3 + 3 < 75 / 4
        during = [t for t in fetches if started <= t <= started + trickle_s]
        assert len(during) <= trickle_s / 0.3 + 3

        await asyncio.sleep(1.0)  # idle
        emitted = loop.time()
        await bus.emit(sms(75))
        await eventually(
            lambda: count(pool, "SELECT count(*) FROM applied_events"),
            until=(76).__eq__, within=5, interval=0.01,
        )  # fmt: skip
        assert loop.time() - emitted < 0.3 + 0.5
    assert await pool.fetchval("SELECT max(n) FROM applied_events") == 1


async def test_a_lone_event_is_applied_quickly_when_idle(
    settings: Settings, kafka_bootstrap: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    runner = runner_for(InboundSmsProjection(), settings, kafka_bootstrap, pool, bus)
    async with running(runner):
        await bus.emit(sms(0))
        await eventually(lambda: count(pool, "SELECT count(*) FROM inbound_sms"), until=bool)
        await bus.emit(sms(1))
        await eventually(
            lambda: count(pool, "SELECT count(*) FROM inbound_sms"), until=lambda n: n == 2
        )


class SchemaDriftProjection(CountingProjection):
    """Fails like a table missing a column on one event, like a Postgres restart on another."""

    def __init__(self) -> None:
        self.restarts = [ConnectionResetError("server closed the connection")] * 2

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        bodies = [r.event.data.body for r in records]  # type: ignore[attr-defined]
        if "during restart" in bodies and self.restarts:
            raise self.restarts.pop()
        if "missing column" in bodies:
            await conn.execute("UPDATE applied_events SET no_such_column = 1")
        await super().apply(conn, records)


async def test_an_outage_is_waited_out_and_a_missing_column_parked_not_retried_forever(
    settings: Settings, kafka_bootstrap: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    topic = SMS_INBOUND.full_name(settings.kafka.topic_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i, body in enumerate(("during restart", "missing column", "after")):
            event = sms(i, body=body)
            await producer.send_and_wait(topic, event.model_dump_json().encode(), partition=0)
    finally:
        await producer.stop()

    projection = SchemaDriftProjection()
    runner = runner_for(projection, settings, kafka_bootstrap, pool, bus)
    async with running(runner):
        await eventually(
            lambda: count(pool, "SELECT count(*) FROM applied_events"), until=lambda n: n == 2
        )
    assert projection.restarts == []

    dlq = AIOKafkaConsumer(
        f"{topic}.dlq", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await dlq.start()
    try:
        batch = await dlq.getmany(timeout_ms=5000)
    finally:
        await dlq.stop()
    letters = [dict(r.headers) for rs in batch.values() for r in rs]
    assert [h["dlq_offset"] for h in letters] == [b"1"]
    assert letters[0]["dlq_error"].startswith(b"UndefinedColumnError")


class CountingTwice(CountingProjection):
    """The same counting, in a table and under a checkpoint of its own."""

    name = "counting_too"
    tables: tuple[str, ...] = ("applied_too",)

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        await conn.executemany(
            "INSERT INTO applied_too (event_id, n) VALUES ($1, 1) "
            "ON CONFLICT (event_id) DO UPDATE SET n = applied_too.n + 1",
            [(r.event.id,) for r in records],
        )


async def test_projections_sharing_a_runner_each_resume_from_their_own_checkpoint(
    settings: Settings, kafka_bootstrap: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    """One consumer for two projections of one topic, one of them 200 events ahead: the topic
    is read from the other's (lower) checkpoint, the one ahead skips what it holds."""
    await pool.execute("CREATE TABLE applied_too (event_id text PRIMARY KEY, n int NOT NULL)")
    await bus.emit_many([sms(i) for i in range(200)])
    ahead = CountingProjection()
    async with running(runner_for(ahead, settings, kafka_bootstrap, pool, bus)):
        await projection_caught_up(pool, kafka_bootstrap, settings.kafka, ahead.name, SMS_INBOUND)
    await bus.emit_many([sms(i) for i in range(200, 300)])

    behind = CountingTwice()
    shared = ProjectionRunner(
        [ahead, behind],
        bootstrap=kafka_bootstrap,
        kafka=settings.kafka,
        pool=pool,
        dead_letters={p.name: DeadLetters(bus, p.name) for p in (ahead, behind)},
    )
    async with running(shared):
        for name in (ahead.name, behind.name):
            await projection_caught_up(pool, kafka_bootstrap, settings.kafka, name, SMS_INBOUND)

    for table in ("applied_events", "applied_too"):
        counts = await pool.fetch(f"SELECT n, count(*) AS events FROM {table} GROUP BY n")  # noqa: S608
        assert [(r["n"], r["events"]) for r in counts] == [(1, 300)], table
