import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from events import Event
from events.sim import SimActivationRequested
from events.sms import SmsDeliveryReported, SmsReceived
from infra.bus import Bus
from infra.dead_letters import DeadLetters
from infra.settings import Settings
from projections.archive import ArchiveProjection
from projections.gateways import GatewaysProjection
from projections.replay import ReplayError, rebuild, republish
from projections.runner import Projection, ProjectionRunner
from projections.shadow import shadow_tables
from projections.sms import InboundSmsProjection
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 4, 12, tzinfo=UTC)


def mixed_events(n: int) -> list[Event]:
    events: list[Event] = []
    for i in range(n):
        if i % 10 == 8:
            events.append(
                SmsDeliveryReported.create(
                    producer="t",
                    time=T0,
                    gateway_id="gw",
                    smsc="+1555",
                    recipient="+15559870000",
                    status_code=0,
                    raw=f"0 {i}",
                    reported_at=T0 + timedelta(seconds=i),
                )
            )
        elif i % 10 == 9:
            events.append(
                SimActivationRequested.create(
                    producer="t",
                    time=T0,
                    iccid="89012608822000000011",
                    imei="356938035643809",
                    ref=f"row:{i}",
                )
            )
        else:
            events.append(
                SmsReceived.create(
                    producer="t",
                    time=T0,
                    gateway_id="gw",
                    port=f"{i % 32}.01",
                    sender="+15551230000",
                    to=f"+1555987{i % 100:04d}",
                    body=f"code {i}",
                    received_at=T0 + timedelta(seconds=i),
                )
            )
    return events


async def project_until(
    projection: Projection,
    settings: Settings,
    bootstrap: str,
    pool: asyncpg.Pool,
    bus: Bus,
    table_sql: str,
    expected: int,
) -> None:
    runner = ProjectionRunner(
        projection,
        bootstrap=bootstrap,
        kafka=settings.kafka,
        pool=pool,
        dead_letters=DeadLetters(bus, projection.name),
    )
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: pool.fetchval(table_sql), until=lambda n: n == expected, within=60)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_rebuilds_from_topics_and_archive_match_the_live_tables(
    settings: Settings, kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    events = mixed_events(10_000)
    for start in range(0, len(events), 1000):
        await bus.emit_many(events[start : start + 1000])
    sms_count = sum(isinstance(e, SmsReceived) for e in events)
    await project_until(
        InboundSmsProjection(),
        settings,
        kafka_bootstrap,
        pool,
        bus,
        "SELECT count(*) FROM inbound_sms",
        sms_count,
    )
    await project_until(
        ArchiveProjection(),
        settings,
        kafka_bootstrap,
        pool,
        bus,
        "SELECT count(*) FROM event_log",
        len({e.id for e in events}),
    )

    def run(
        projection: Projection, *, from_archive: bool, swap: bool
    ) -> "asyncio.Future[list[str]]":
        return asyncio.ensure_future(
            rebuild(
                projection,
                dsn=database_url,
                live_pool=pool,
                bus=bus,
                bootstrap=kafka_bootstrap,
                kafka=settings.kafka,
                from_archive=from_archive,
                swap=swap,
                progress=lambda done, total: None,
            )
        )

    assert await run(InboundSmsProjection(), from_archive=False, swap=False) == []
    assert await run(InboundSmsProjection(), from_archive=True, swap=False) == []
    assert await run(ArchiveProjection(), from_archive=False, swap=False) == []

    # a row lost behind the projection's back is reported, then restored by a rebuild
    lost = events[0]
    await pool.execute("DELETE FROM inbound_sms WHERE message_id = $1", lost.id)
    differences = await run(InboundSmsProjection(), from_archive=True, swap=False)
    assert len(differences) == 1
    assert "rebuilt only" in differences[0]
    assert lost.id in differences[0]

    assert await run(InboundSmsProjection(), from_archive=True, swap=True) == []
    assert await pool.fetchval("SELECT count(*) FROM inbound_sms") == sms_count
    assert await pool.fetchval("SELECT 1 FROM inbound_sms WHERE message_id = $1", lost.id) == 1
    assert await run(InboundSmsProjection(), from_archive=False, swap=False) == []
    schemas = await pool.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'replay_%'")
    assert schemas == []


async def test_republish_sends_archived_events_with_their_ids(
    settings: Settings, kafka_bootstrap: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    events = mixed_events(100)
    await bus.emit_many(events)
    await project_until(
        ArchiveProjection(),
        settings,
        kafka_bootstrap,
        pool,
        bus,
        "SELECT count(*) FROM event_log",
        100,
    )
    sent = await republish(
        pool, bus, types=["sms.received"], since=None, until=None, progress=lambda d, t: None
    )
    assert sent == sum(isinstance(e, SmsReceived) for e in events)
    # the archive reads every re-published event and stores nothing new: same ids
    await project_until(
        ArchiveProjection(),
        settings,
        kafka_bootstrap,
        pool,
        bus,
        "SELECT sum(\"offset\" + 1)::int FROM projection_checkpoints WHERE projection = 'archive'",
        100 + sent,
    )
    assert await pool.fetchval("SELECT count(*) FROM event_log") == 100


async def rebuild_inbound_sms(
    settings: Settings, bootstrap: str, database_url: str, pool: asyncpg.Pool, bus: Bus, **kw: float
) -> list[str]:
    return await rebuild(
        InboundSmsProjection(),
        dsn=database_url,
        live_pool=pool,
        bus=bus,
        bootstrap=bootstrap,
        kafka=settings.kafka,
        from_archive=False,
        swap=True,
        progress=lambda done, total: None,
        **kw,
    )


async def test_a_checkpoint_of_a_topic_it_no_longer_reads_does_not_stall_the_rebuild(
    settings: Settings, kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    """Another topic prefix once used this database (a bench run, a renamed environment): its
    positions are out of this rebuild's reach and must not be waited for."""
    await bus.emit_many(mixed_events(100))
    sms_count = sum(isinstance(e, SmsReceived) for e in mixed_events(100))
    await project_until(
        InboundSmsProjection(),
        settings,
        kafka_bootstrap,
        pool,
        bus,
        "SELECT count(*) FROM inbound_sms",
        sms_count,
    )
    await pool.execute(
        'INSERT INTO projection_checkpoints (projection, topic, partition, "offset") '
        "VALUES ('inbound_sms', 'another-prefix.sms.inbound', 0, 5000)"
    )
    async with asyncio.timeout(60):
        assert await rebuild_inbound_sms(settings, kafka_bootstrap, database_url, pool, bus) == []
    assert await pool.fetchval("SELECT count(*) FROM inbound_sms") == sms_count


async def test_a_rebuild_that_cannot_reach_the_live_position_fails_with_the_positions(
    settings: Settings, kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    await bus.emit(mixed_events(1)[0])
    topic = f"{settings.kafka.topic_prefix}sms.inbound"
    await pool.execute(
        'INSERT INTO projection_checkpoints (projection, topic, partition, "offset") '
        "VALUES ('inbound_sms', $1, 0, 5000)",
        topic,
    )
    with pytest.raises(ReplayError, match=rf"{topic}\[0\] at -?\d+ of 5000"):
        await rebuild_inbound_sms(settings, kafka_bootstrap, database_url, pool, bus, stall_s=5.0)


async def test_the_swap_leaves_the_live_table_with_its_indexes_and_the_rebuilt_rows(
    settings: Settings, kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, bus: Bus
) -> None:
    """The swap drops the live table's plain indexes and builds them again after the rows."""
    events = mixed_events(200)
    await bus.emit_many(events)
    sms_ids = sorted(e.id for e in events if isinstance(e, SmsReceived))
    await project_until(
        InboundSmsProjection(),
        settings,
        kafka_bootstrap,
        pool,
        bus,
        "SELECT count(*) FROM inbound_sms",
        len(sms_ids),
    )
    indexes = (
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'inbound_sms' ORDER BY 1"
    )
    before = await pool.fetch(indexes)
    await pool.execute("DELETE FROM inbound_sms WHERE message_id = $1", sms_ids[0])

    async with asyncio.timeout(60):
        assert await rebuild_inbound_sms(settings, kafka_bootstrap, database_url, pool, bus) == []

    assert await pool.fetch(indexes) == before
    assert len(before) == 6  # primary key, unique message id and four plain indexes
    rows = await pool.fetch("SELECT message_id FROM inbound_sms ORDER BY message_id")
    assert [r["message_id"] for r in rows] == sms_ids


async def test_an_append_only_projection_fills_its_shadow_without_its_plain_indexes(
    settings: Settings, database_url: str
) -> None:
    """inbound_sms only adds rows and reads them back by message id: its shadow keeps the
    primary key and the unique message id, and no other index, while it fills; a projection
    that reads its rows (gateways) keeps every index in its shadow."""
    shadow_indexes = (
        "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 ORDER BY 1"
    )
    async with shadow_tables(database_url, InboundSmsProjection(), settings.kafka) as shadow:
        sms_indexes = await shadow.pool.fetch(shadow_indexes, shadow.schema, "inbound_sms")
    async with shadow_tables(database_url, GatewaysProjection(), settings.kafka) as shadow:
        port_indexes = await shadow.pool.fetch(shadow_indexes, shadow.schema, "gateway_ports")
    live_port_indexes = await live_index_count(database_url, "gateway_ports")

    assert [r["indexname"] for r in sms_indexes] == [
        "inbound_sms_message_id_key",
        "inbound_sms_pkey",
    ]
    assert len(port_indexes) == live_port_indexes


async def live_index_count(database_url: str, table: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1",
                table,
            )
        )
    finally:
        await conn.close()
