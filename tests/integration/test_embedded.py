"""The embedded broker and PostgreSQL start from nothing, serve clients and stop cleanly."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.embedded import postgresql as embedded_postgresql
from infra.embedded import tansu as embedded_kafka
from infra.embedded.postgresql import embedded_postgres, start_postgres
from infra.embedded.service import EmbeddedInfraError
from infra.embedded.tansu import embedded_broker, start_broker

pytestmark = pytest.mark.integration

# Under /tmp, pytest's 0700 directories keep the unprivileged server account out when we are root.
TEST_TMP = Path(__file__).resolve().parents[2] / ".simfleet" / "test-tmp"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True
    return state != "Z"


def _wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    TEST_TMP.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="embedded-", dir=TEST_TMP))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_broker_round_trip_then_stop(state_dir: Path) -> None:
    broker = start_broker(state_dir)
    try:
        assert broker.owned
        assert broker.pid is not None
        assert broker.url.startswith("127.0.0.1:")
        assert (state_dir / "kafka" / "instance.json").exists()
        topic = f"embedded-{uuid.uuid4().hex[:8]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.url)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.url, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello", key=b"sim-1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker.url, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = await consumer.getone()
        finally:
            await consumer.stop()
        assert (record.key, record.value) == (b"sim-1", b"hello")
    finally:
        broker.stop()
    assert _wait_dead(broker.pid)
    assert not (state_dir / "kafka" / "instance.json").exists()


def test_broker_reuse_attaches_without_owning(state_dir: Path) -> None:
    with embedded_broker(state_dir) as first:
        second = start_broker(state_dir, reuse=True)
        assert (second.url, second.pid, second.owned) == (first.url, first.pid, False)
        second.stop()
        assert first.pid is not None
        assert _alive(first.pid)
    assert first.pid is not None
    assert _wait_dead(first.pid)


async def test_postgres_select_persist_and_stop(state_dir: Path) -> None:
    pg = start_postgres(state_dir, fast_unsafe=True)
    try:
        assert pg.owned
        assert pg.url.startswith("postgresql://simfleet:")
        assert "@127.0.0.1:" in pg.url
        assert pg.url.endswith("/simfleet")
        conn = await asyncpg.connect(pg.url)
        try:
            assert await conn.fetchval("select 1") == 1
            await conn.execute("create table kept (v text); insert into kept values ('x')")
        finally:
            await conn.close()
    finally:
        pg.stop()
    assert pg.pid is not None
    assert _wait_dead(pg.pid)
    assert not (state_dir / "postgres" / "instance.json").exists()

    # The data directory survives a restart, even though the port may change.
    with embedded_postgres(state_dir) as again:
        conn = await asyncpg.connect(again.url)
        try:
            assert await conn.fetchval("select v from kept") == "x"
        finally:
            await conn.close()


async def test_postgres_reuse_attaches_without_owning(state_dir: Path) -> None:
    with embedded_postgres(state_dir, fast_unsafe=True) as first:
        second = start_postgres(state_dir, reuse=True)
        assert (second.url, second.pid, second.owned) == (first.url, first.pid, False)
        second.stop()
        conn = await asyncpg.connect(first.url)
        try:
            assert await conn.fetchval("select 1") == 1
        finally:
            await conn.close()
        with pytest.raises(EmbeddedInfraError, match="reuse=True"):
            start_postgres(state_dir)
    assert first.pid is not None
    assert _wait_dead(first.pid)


def test_missing_broker_binary_says_what_to_set(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded_kafka, "tansu_path", lambda: state_dir / "no-such-tansu")
    with pytest.raises(EmbeddedInfraError, match="KAFKA_BOOTSTRAP_SERVERS=host:port"):
        start_broker(state_dir)


def test_missing_postgres_says_what_to_set(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded_postgresql, "postgres_bindir", lambda: None)
    with pytest.raises(EmbeddedInfraError, match=r"no PostgreSQL server found.*DATABASE_URL="):
        start_postgres(state_dir)
