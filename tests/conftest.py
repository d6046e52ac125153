"""Shared fixtures: real infrastructure chosen once per session, isolation per test.

Infrastructure: env vars → testcontainers (Docker) → embedded processes (tests/support), the
broker and Postgres started side by side once the tests are collected (tests/support/starting.py).
Isolation: every test gets its own topic prefix and its own database cloned from a migrated
template, so tests never see each other's events or rows.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from infra.bus import Bus
from infra.kafka import build_broker, ensure_topics
from infra.logging import configure as configure_logging
from infra.postgres import create_pool, drop_database, migrate, with_database
from infra.settings import KafkaSettings, PostgresSettings, Settings
from tests.support.infrastructure import database_url as resolve_database_url
from tests.support.infrastructure import kafka_bootstrap as resolve_kafka_bootstrap
from tests.support.starting import StartingTogether

# every record a test publishes is checked against the published contracts
pytest_plugins = ["tests.support.record_contracts"]

ROOT = Path(__file__).resolve().parents[1]
# one directory per test session, so concurrent sessions never share an embedded server
STATE_DIR = ROOT / ".simfleet" / "test" / f"session-{os.getpid()}"
TEMPLATE_DB = "simfleet_test_template"
# A live projection's fetch gathers 80 ms of records on the broker by default: throughput under
# a trickle, which the benchmarks measure. Tests wait on what a projection wrote, step after
# step, so each step would wait out the window: here a fetch is answered at its first record
# (test_projection_engine runs the gathering itself).
TEST_GATHER_MS = 0
# A projection's or the webhook consumer's idle fetch waits 500 ms on the broker by default. A
# new member's seek to the start of a partition (a projection without a checkpoint there) waits
# for the fetch in flight: a projection of every topic took 18 s to join, and a test ending
# sooner waited that out in its teardown. Apache Kafka answers a fetch at its first record, so
# the wait only costs idle polls.
TEST_FETCH_WAIT_MS = 100


@pytest.fixture(scope="session", autouse=True)
def process_logging() -> None:
    """The tests log as a simfleet process does, at INFO: the runtime's broker hands FastStream's
    per-message lines to the log at DEBUG, and rendering them all costs the consumers their
    heartbeats on a busy machine. A test wanting other levels configures its own."""
    configure_logging("auto", "INFO")


async def migrated_template(server_url: str) -> str:
    """The template every test's database is cloned from: created afresh and migrated."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    url = with_database(server_url, TEMPLATE_DB)
    await migrate(url)
    return url


STARTING = StartingTogether()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the broker and Postgres side by side when the collected tests need both."""
    if session.config.option.collectonly:
        return
    needed = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    if {"kafka_bootstrap", "server_url"} <= needed:
        STARTING.start(STATE_DIR, migrated_template)


def pytest_unconfigure(config: pytest.Config) -> None:
    STARTING.close()  # when no fixture took them (infra_stack closes them otherwise)


def remove_in_background(directory: Path) -> None:
    """The session's state goes once its services stopped, but not on the suite's clock: the
    broker's log holds a directory per partition of every test's topics (tens of thousands of
    files; removing them took a minute and a half of a busy machine). Renamed first, so nothing
    can find it; removed by an ``rm`` of its own that outlives the session."""
    if not directory.exists():
        return
    doomed = directory.with_name(f"{directory.name}.removing")
    directory.rename(doomed)
    subprocess.Popen(
        ["rm", "-rf", str(doomed)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="session")
def infra_stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        stack.callback(remove_in_background, STATE_DIR)
        stack.callback(STARTING.close)  # the services stop before their directory goes
        yield stack


@pytest.fixture(scope="session")
def kafka_bootstrap(infra_stack: contextlib.ExitStack) -> str:
    return STARTING.kafka() or resolve_kafka_bootstrap(infra_stack, STATE_DIR)


@pytest.fixture(scope="session")
def server_url(infra_stack: contextlib.ExitStack) -> str:
    started = STARTING.postgres()
    return started[0] if started else resolve_database_url(infra_stack, STATE_DIR)


@pytest.fixture(scope="session")
async def template_url(server_url: str) -> str:
    started = STARTING.postgres()
    return started[1] if started else await migrated_template(server_url)


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A database cloned from the migrated template, dropped when the block ends."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    yield with_database(server_url, name)
    await drop_database(server_url, name)


@pytest.fixture
async def database_url(server_url: str, template_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test alone."""
    async with fresh_database(server_url) as url:
        yield url


def new_topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def topic_prefix() -> str:
    return new_topic_prefix()


def isolated_settings(kafka_bootstrap: str, database_url: str, topic_prefix: str) -> Settings:
    """Settings for one test's world: its own topics and database, quick group joins, and
    projections that write what they read at once (``TEST_GATHER_MS``)."""
    return Settings(
        env="test",
        state_dir=STATE_DIR,
        kafka=KafkaSettings(
            kafka_bootstrap_servers=kafka_bootstrap,
            topic_prefix=topic_prefix,
            kafka_default_partitions=3,
            kafka_session_timeout_ms=2000,
            kafka_heartbeat_interval_ms=400,
            kafka_projection_gather_ms=TEST_GATHER_MS,
            # the embedded Tansu's 20 ms (set in the environment when it starts) stays
            kafka_fetch_wait_ms=int(os.environ.get("KAFKA_FETCH_WAIT_MS", TEST_FETCH_WAIT_MS)),
        ),
        postgres=PostgresSettings(database_url=SecretStr(database_url)),
    )


@pytest.fixture
def settings(kafka_bootstrap: str, database_url: str, topic_prefix: str) -> Settings:
    return isolated_settings(kafka_bootstrap, database_url, topic_prefix)


@pytest.fixture
async def topics(settings: Settings, kafka_bootstrap: str) -> list[str]:
    """This test's topics, created explicitly (the embedded broker must not auto-create)."""
    return await ensure_topics(kafka_bootstrap, settings.kafka)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this test's database."""
    pool = await create_pool(database_url, min_size=1, max_size=6)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def bus(settings: Settings, kafka_bootstrap: str, topics: list[str]) -> AsyncIterator[Bus]:
    """A started producer on this test's topics."""
    broker = build_broker(settings.kafka, kafka_bootstrap)
    await broker.start()
    try:
        yield Bus(broker, settings.kafka.topic_prefix)
    finally:
        await broker.stop()
