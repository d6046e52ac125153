"""Postgres restarted mid-stream: the projection runners wait, resume, and lose nothing.

The test runs its own embedded Postgres on a fixed port (the session's server is shared by
every test and must not go down), stops it while events flow and starts it again on the same
port with the same data directory, as an operator restarting the database would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from events.sms import SmsReceived
from events.topics import SMS_INBOUND
from infra.bus import Bus
from infra.dead_letters import DeadLetters
from infra.kafka import build_broker
from infra.postgres import create_pool, migrate
from infra.settings import Settings
from projections.archive import ArchiveProjection
from projections.runner import ProjectionRunner
from projections.sms import InboundSmsProjection
from tests.support.eventually import eventually
from tests.support.positions import projection_reached
from tests.support.projecting import running
from tests.support.restartable_postgres import RestartablePostgres, restartable_postgres

pytestmark = pytest.mark.integration

EVENTS = 5_000
WAVE = 500
T0 = datetime(2026, 2, 4, 12, tzinfo=UTC)


def sms(i: int) -> SmsReceived:
    return SmsReceived.create(
        producer="simfleet/test",
        time=T0,
        gateway_id="gw-1",
        port=f"{i % 8 + 1}.01",
        sender="+15551230000",
        to=f"+1555987{i % 50:04d}",
        body=f"message {i}",
        received_at=T0 + timedelta(seconds=i),
    )


@pytest.fixture
def postgres() -> Iterator[RestartablePostgres]:
    with restartable_postgres() as pg:
        yield pg


@pytest.fixture
async def bus(settings: Settings, kafka_bootstrap: str, topics: list[str]) -> AsyncIterator[Bus]:
    broker = build_broker(settings.kafka, kafka_bootstrap)
    await broker.start()
    yield Bus(broker, settings.kafka.topic_prefix)
    await broker.stop()


@pytest.fixture
async def pool(postgres: RestartablePostgres) -> AsyncIterator[asyncpg.Pool]:
    await migrate(postgres.url)
    pool = await create_pool(postgres.url, min_size=2, max_size=4)
    yield pool
    await pool.close()


async def count(pool: asyncpg.Pool, sql: str) -> int:
    return int(await pool.fetchval(sql))


async def column(pool: asyncpg.Pool, sql: str) -> set[str]:
    return {str(r[0]) for r in await pool.fetch(sql)}


async def last_offsets(
    bootstrap: str, topic: str, partitions: int, expected: int
) -> dict[int, int]:
    """Each non-empty partition's last offset, found by reading all ``expected`` records.

    Not ``end_offsets()``: the embedded broker (Tansu) answers it with the base offset of the
    partition's last batch + 1, not with the high watermark.
    """
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    last: dict[int, int] = {}
    read = 0
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 15
        while read < expected and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                read += len(records)
                last[tp.partition] = records[-1].offset
        beyond = await consumer.getmany(timeout_ms=1000)  # nothing more is there
        read += sum(len(records) for records in beyond.values())
    finally:
        await consumer.stop()
    assert read == expected, f"{topic} holds {read} records, expected {expected}"
    return last


async def checkpoints(pool: asyncpg.Pool, projection: str, topic: str) -> dict[int, int]:
    rows = await pool.fetch(
        'SELECT partition, "offset" FROM projection_checkpoints '
        "WHERE projection = $1 AND topic = $2",
        projection,
        topic,
    )
    return {r["partition"]: r["offset"] for r in rows}


def projection_runners(
    settings: Settings, kafka_bootstrap: str, pool: asyncpg.Pool, bus: Bus
) -> list[ProjectionRunner]:
    return [
        ProjectionRunner(
            projection,
            bootstrap=kafka_bootstrap,
            kafka=settings.kafka,
            pool=pool,
            dead_letters=DeadLetters(bus, projection.name),
            max_records=WAVE // 2,  # several transactions per wave: one is in flight at the stop
            retry_delay_s=0.25,
        )
        for projection in (InboundSmsProjection(), ArchiveProjection())
    ]


def waiting_out(logs: Sequence[Mapping[str, Any]]) -> set[str]:
    """The projections that logged they wait an outage out."""
    return {e["projection"] for e in logs if e["event"] == "projection_waiting_out_outage"}


async def read_to_the_end(pool: asyncpg.Pool, settings: Settings, kafka_bootstrap: str) -> None:
    topic = SMS_INBOUND.full_name(settings.kafka.topic_prefix)
    partitions = settings.kafka.partitions_for(SMS_INBOUND.name, SMS_INBOUND.partitions)
    last = await last_offsets(kafka_bootstrap, topic, partitions, expected=EVENTS)
    ends = {partition: offset + 1 for partition, offset in last.items()}
    for projection in ("inbound_sms", "archive"):
        await projection_reached(pool, projection, topic, ends, within=60)


async def assert_each_event_once(pool: asyncpg.Pool, events: list[SmsReceived]) -> None:
    ids = {e.id for e in events}
    assert len(ids) == len(events)
    assert await count(pool, "SELECT count(*) FROM inbound_sms") == len(events)
    assert await column(pool, "SELECT message_id FROM inbound_sms") == ids
    assert await count(pool, "SELECT count(*) FROM event_log") == len(events)
    assert await column(pool, "SELECT id FROM event_log") == ids
    # each archived under its own offset: nothing was read past, nothing archived twice
    positions = 'SELECT count(DISTINCT (partition, "offset")) FROM event_log'
    assert await count(pool, positions) == len(events)


async def assert_checkpoints_at_the_end(
    pool: asyncpg.Pool, settings: Settings, kafka_bootstrap: str
) -> None:
    topic = SMS_INBOUND.full_name(settings.kafka.topic_prefix)
    partitions = settings.kafka.partitions_for(SMS_INBOUND.name, SMS_INBOUND.partitions)
    last = await last_offsets(kafka_bootstrap, topic, partitions, expected=EVENTS)
    assert await checkpoints(pool, "inbound_sms", topic) == last
    assert await checkpoints(pool, "archive", topic) == last
    # waiting for Postgres is not the events' fault: none of them was dead-lettered
    assert await last_offsets(kafka_bootstrap, f"{topic}.dlq", partitions, expected=0) == {}


async def test_postgres_restarted_mid_stream_consumers_wait_and_resume_with_nothing_lost(
    settings: Settings,
    kafka_bootstrap: str,
    bus: Bus,
    postgres: RestartablePostgres,
    pool: asyncpg.Pool,
) -> None:
    url = postgres.url
    # untouched during the outage: every one of its connections dies with the server
    idle = await create_pool(url, min_size=2, max_size=2)
    sms_runner, archive_runner = projection_runners(settings, kafka_bootstrap, pool, bus)
    events = [sms(i) for i in range(EVENTS)]
    waves = [events[i : i + WAVE] for i in range(0, EVENTS, WAVE)]

    async def publish(some: list[list[SmsReceived]]) -> None:
        for wave in some:
            await bus.emit_many(wave)
            await asyncio.sleep(0.2)

    try:
        with structlog.testing.capture_logs() as logs:
            async with running(sms_runner) as sms_task, running(archive_runner) as archive_task:
                before = asyncio.create_task(publish(waves[:6]))
                await eventually(
                    lambda: count(pool, "SELECT count(*) FROM inbound_sms"),
                    until=lambda n: n >= 2 * WAVE,
                    within=60,  # the groups' first join, on a busy machine
                )
                # stopped while waves are still being published and applied
                await asyncio.to_thread(postgres.stop)
                await before  # the rest of these waves arrive while Postgres is down
                # down until both runners met the outage and chose to wait it out
                await eventually(
                    lambda: asyncio.sleep(0, waiting_out(logs)),  # a plain value, awaitable
                    until=lambda waiting: waiting == {"inbound_sms", "archive"},
                    within=60,
                )
                with pytest.raises(ConnectionRefusedError):
                    await asyncpg.connect(url, timeout=2)
                assert not sms_task.done(), "the inbound_sms runner gave up"
                assert not archive_task.done(), "the archive runner gave up"

                await asyncio.to_thread(postgres.start)  # same port, same data directory
                assert postgres.url == url
                # a pool whose every connection died reconnects on the next acquire
                async with idle.acquire() as a, idle.acquire() as b:
                    assert (await a.fetchval("SELECT 1"), await b.fetchval("SELECT 2")) == (1, 2)

                await publish(waves[6:])
                # both read to the last record: a late duplicate row would be there by then
                await read_to_the_end(pool, settings, kafka_bootstrap)
    finally:
        await idle.close()

    await assert_each_event_once(pool, events)
    await assert_checkpoints_at_the_end(pool, settings, kafka_bootstrap)
    assert not [e for e in logs if e["event"] == "event_dead_lettered"]
