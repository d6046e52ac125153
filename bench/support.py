"""Infrastructure for benchmarks: configured services if set, else the embedded ones.

The broker a benchmark runs on is chosen outside it: ``python -m bench`` runs every module once
per broker (``BROKERS``) inside ``on_broker(kind)``, which records the choice in the environment
(``BENCH_BROKER``) together with what a ``simfleet`` process started by the benchmark must agree
with (``EMBEDDED_BROKER``; ``KAFKA_IDEMPOTENCE=false`` on Tansu, which refuses InitProducerId;
``KAFKA_FETCH_WAIT_MS`` 20 on Tansu, which waits out a fetch's whole wait;
``KAFKA_MAX_PARTITIONS=1`` on Tansu, whose fetches cost more with every batch a partition holds).
A module only asks ``bench_settings()`` or ``kafka_bootstrap()`` for "the broker", and a module
run alone gets Apache Kafka where its jars are, else Tansu, as ``simfleet run`` would.
``KAFKA_BOOTSTRAP_SERVERS`` set: that broker only, labelled ``configured``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import asyncpg
from pydantic import SecretStr

from infra.embedded import broker as embedded_broker
from infra.embedded import postgresql as embedded_postgresql
from infra.embedded.service import RunningService, pid_alive
from infra.kafka import ensure_topics
from infra.postgres import drop_database, migrate, with_database
from infra.settings import KafkaSettings, PostgresSettings, Settings
from simfleet.endpoints import suit_tansu

STATE_DIR = Path(".simfleet/bench")
SCRATCH_PREFIX = "bench_"  # the databases made for one benchmark each
BROKERS = ("kafka", "tansu")  # Apache Kafka (idempotent producer) and the embedded Tansu
BROKER_LABELS = {"kafka": "Apache Kafka", "tansu": "Tansu", "configured": "configured"}
_CHOICE = "BENCH_BROKER"


def configured_bootstrap() -> str | None:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None


def current_broker() -> str:
    """``kafka``, ``tansu`` or ``configured``: the broker benchmarks run on now."""
    if configured_bootstrap():
        return "configured"
    chosen = os.environ.get(_CHOICE)
    return chosen if chosen in BROKERS else embedded_broker.chosen("auto")


def suited_kafka(kind: str | None = None) -> KafkaSettings:
    """The Kafka settings ``simfleet`` runs with on broker ``kind`` (default: the current one):
    the environment's, suited to Tansu by ``suit_tansu`` as ``simfleet`` suits them (what the
    environment sets explicitly, such as a fetch wait to compare, stays)."""
    kafka = KafkaSettings()
    if (kind or current_broker()) == "tansu":
        suit_tansu(kafka)
    return kafka


def idempotence() -> bool:
    return suited_kafka().kafka_idempotence


def fetch_wait_ms(kind: str | None = None) -> int:
    """``KAFKA_FETCH_WAIT_MS`` for broker ``kind`` (default: the current one)."""
    return suited_kafka(kind).kafka_fetch_wait_ms


@contextlib.contextmanager
def on_broker(kind: str) -> Iterator[None]:
    """Benchmarks inside this block (and the processes they start) use broker ``kind``."""
    wanted: dict[str, str | None] = {_CHOICE: kind}
    if kind != "configured":
        kafka = suited_kafka(kind)
        cap = kafka.kafka_max_partitions
        wanted |= {
            "EMBEDDED_BROKER": kind,
            "KAFKA_IDEMPOTENCE": str(kafka.kafka_idempotence).lower(),
            "KAFKA_FETCH_WAIT_MS": str(kafka.kafka_fetch_wait_ms),
            "KAFKA_MAX_PARTITIONS": None if cap is None else str(cap),
        }
    before = {name: os.environ.get(name) for name in wanted}
    _set_environment(wanted)
    try:
        yield
    finally:
        _set_environment(before)


def _set_environment(values: dict[str, str | None]) -> None:
    """Sets each variable; None removes it."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def broker_state_dir(kind: str) -> Path:
    return STATE_DIR / kind


@contextlib.contextmanager
def running_broker(kind: str, *, fresh: bool = False) -> Iterator[RunningService]:
    """The embedded broker ``kind`` for the block: the one already running for the benchmarks
    (``python -m bench`` starts each once for all modules), else a new one stopped at the end.
    ``fresh``: Apache Kafka's log directory is emptied first (topics of earlier runs would
    otherwise pile up on disk and in the broker's memory)."""
    state = broker_state_dir(kind)
    if fresh:
        shutil.rmtree(state / "apache-kafka", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    with embedded_broker.embedded_broker(kind, state, reuse=not fresh) as service:
        yield service


@contextlib.contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of the broker chosen for this benchmark."""
    if configured := configured_bootstrap():
        yield configured
        return
    with running_broker(current_broker()) as service:
        yield service.url


@contextlib.asynccontextmanager
async def bench_settings(partitions: Mapping[str, int] | None = None) -> AsyncIterator[Settings]:
    """Settings on real infrastructure with a fresh topic prefix and a fresh database, migrated
    and topics created (``partitions``: topics given their count whatever the broker's cap)."""
    with contextlib.ExitStack() as stack:
        bootstrap = stack.enter_context(kafka_bootstrap())
        server = (
            os.environ.get("DATABASE_URL")
            or stack.enter_context(
                embedded_postgresql.embedded_postgres(STATE_DIR, reuse=True, fast_unsafe=True)
            ).url
        )
        async with fresh_database(server) as dsn:
            settings = Settings(
                env="test",
                state_dir=STATE_DIR,
                kafka=KafkaSettings(
                    kafka_bootstrap_servers=bootstrap,
                    topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                    kafka_session_timeout_ms=2000,
                    kafka_heartbeat_interval_ms=400,
                    kafka_idempotence=idempotence(),
                    kafka_fetch_wait_ms=fetch_wait_ms(),
                    kafka_partitions=dict(partitions or {}),
                ),
                postgres=PostgresSettings(database_url=SecretStr(dsn)),
            )
            await ensure_topics(bootstrap, settings.kafka)
            yield settings


@contextlib.asynccontextmanager
async def fresh_database(server: str) -> AsyncIterator[str]:
    """A migrated database of its own on ``server`` for the block, dropped after. As the topic
    prefix is fresh: what earlier benchmarks left (hundreds of thousands of rows, their
    autovacuum) would otherwise weigh on this one's figures by the order the modules ran in.
    Where the account may not create databases, ``server``'s own, with what it holds."""
    name = f"{SCRATCH_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server)
    try:
        await _drop_abandoned(admin)
        await admin.execute(f'CREATE DATABASE "{name}"')
        created = True
    except asyncpg.InsufficientPrivilegeError:
        created = False
    finally:
        await admin.close()
    if not created:
        await migrate(server)
        await _close_leftover_claims(server)
        yield server
        return
    dsn = with_database(server, name)
    try:
        await migrate(dsn)
        yield dsn
    finally:
        await drop_database(server, name)


async def _drop_abandoned(admin: asyncpg.Connection) -> None:
    """Scratch databases of a run stopped midway: named after a process no longer running."""
    rows = await admin.fetch(
        "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{SCRATCH_PREFIX}%"
    )
    for row in rows:
        pid = row["datname"].removeprefix(SCRATCH_PREFIX).split("_")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            await admin.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')


async def _close_leftover_claims(dsn: str) -> None:
    """A shared database outlives a run (its topics do not): deliveries an earlier run left
    pending (a ladder step that did not keep up, a run stopped midway) would be taken over by
    this run's webhook consumer, to receivers long gone, and counted in its CPU."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE webhook_claims SET state = 'failed', owner = NULL, due_at = NULL "
            "WHERE state IN ('pending', 'scheduled')"
        )
    finally:
        await connection.close()


def dsn_of(settings: Settings) -> str:
    if settings.postgres.database_url is None:
        raise RuntimeError("bench settings always carry a database URL")
    return settings.postgres.database_url.get_secret_value()


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set so far, from the kernel (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def _stat_ticks(pid: int, count: int) -> float:
    """The sum of ``/proc/<pid>/stat``'s first ``count`` CPU fields (utime, stime, cutime,
    cstime), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11 : 11 + count]) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The process's children now (of any of its threads)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    return _stat_ticks(pid, 2)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of the process and all its descendants, living or ended (Postgres: the
    postmaster, a backend per connection and its background workers)."""
    used = _stat_ticks(pid, 4)  # its own, and that of the children it has waited for
    for child in child_pids(pid):
        with contextlib.suppress(OSError):
            used += tree_cpu_s(child)
    return used


def infrastructure_cpu() -> dict[str, Callable[[], float]]:
    """CPU-seconds gauges of the embedded broker and Postgres the benchmarks run on (each is
    started once and reused; one given by the environment is not watched): they share the two
    cores with the system under test."""
    gauges: dict[str, Callable[[], float]] = {}
    if not configured_bootstrap():
        with running_broker(current_broker()) as broker:
            if broker.pid:
                gauges["broker"] = functools.partial(cpu_s, broker.pid)
    if not os.environ.get("DATABASE_URL"):
        with embedded_postgresql.embedded_postgres(
            STATE_DIR, reuse=True, fast_unsafe=True
        ) as postgres:
            if postgres.pid:
                gauges["postgres"] = functools.partial(tree_cpu_s, postgres.pid)
    return gauges
