"""Replay rebuild: how fast ``simfleet replay projection inbound_sms`` rebuilds the table from
offset 0 of its topic (shadow tables, catch up with the live checkpoints, swap).

Target: the whole rebuild, swap included, at least 25% of a raw asyncpg COPY of the same rows
into a table of the same shape in the same run (``bench.copy_reference``); the command's peak
memory is its VmHWM (read from /proc while it runs: the high-water mark only grows).

A backlog of sms.received is published and projected live first (the state an operator
replays from); the live projector is then stopped, so the figure is the rebuild alone. The
rebuild runs in this process (to see each batch), then once more as the CLI command.
Every wait has a deadline: a rebuild that cannot finish fails the benchmark, it never hangs.

    .venv/bin/python -m bench bench_replay
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.bench_projection import backlog
from bench.copy_reference import CopyFigure, broker_label, inbound_rows, ratio_row, raw_copy
from bench.support import STATE_DIR, bench_settings, dsn_of
from events.topics import SMS_INBOUND
from infra.bus import Bus
from infra.dead_letters import DeadLetters
from infra.gc_tuning import tuned_for_service
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import Settings
from projections.replay import rebuild
from projections.runner import ProjectionRunner
from projections.sms import InboundSmsProjection

EVENTS = 200_000
LIVE_CATCH_UP_S = 300  # deadlines against a hang, not targets: a busy machine is slow
REBUILD_S = 300
TARGET = 0.25
SIMFLEET = str(Path(sys.executable).parent / "simfleet")


async def _publish(settings: Settings) -> CopyFigure:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.kafka_bootstrap_servers,
        acks="all",
        linger_ms=10,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    topic = SMS_INBOUND.full_name(settings.kafka.topic_prefix)
    events = backlog(EVENTS)
    try:
        sends = [
            await producer.send(topic, value, key=key, headers=headers)
            for key, value, headers in events
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return await raw_copy(dsn_of(settings), inbound_rows([v for _, v, _ in events]))


async def _rows(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM inbound_sms WHERE gateway_id LIKE 'gw-%'"
    )
    return count


async def _project_live(settings: Settings, pool: asyncpg.Pool, bus: Bus) -> None:
    """The live projection over the backlog, until every event is a row (counted in Postgres:
    the embedded broker's end offsets are not to be trusted)."""
    runner = ProjectionRunner(
        InboundSmsProjection(),
        bootstrap=settings.kafka.kafka_bootstrap_servers or "",
        kafka=settings.kafka,
        pool=pool,
        dead_letters=DeadLetters(bus, "bench"),
    )
    task = asyncio.create_task(runner.run())
    try:
        deadline = time.monotonic() + LIVE_CATCH_UP_S
        while (rows := await _rows(pool)) < EVENTS:
            if task.done():
                await task
            if time.monotonic() > deadline:
                raise RuntimeError(f"live projection: {rows:,} of {EVENTS:,} rows")
            await asyncio.sleep(0.5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _high_water_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0  # gone already: the last reading stands
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def _replay_command(settings: Settings) -> tuple[float, int]:
    """The operator's command on the same topics and tables: seconds it took, start-up included,
    and its peak resident memory (KiB)."""
    env = {
        **os.environ,
        "SIMFLEET_ENV": "test",
        "SIMFLEET_STATE_DIR": str(STATE_DIR),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.kafka_bootstrap_servers or "",
        "DATABASE_URL": dsn_of(settings),
        "TOPIC_PREFIX": settings.kafka.topic_prefix,
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "400",
        # as the benchmark's own clients: the embedded Tansu refuses InitProducerId
        "KAFKA_IDEMPOTENCE": "true" if settings.kafka.kafka_idempotence else "false",
    }
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        SIMFLEET,
        "replay",
        "projection",
        "inbound_sms",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    peak_kib = 0

    async def watch_memory() -> None:
        nonlocal peak_kib
        while True:
            peak_kib = max(peak_kib, _high_water_kib(proc.pid))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch_memory())
    try:
        async with asyncio.timeout(REBUILD_S):
            output, _ = await proc.communicate()  # read as it comes: a full pipe would block it
    finally:
        watcher.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    took = time.perf_counter() - started
    if proc.returncode != 0 or b"rebuilt and swapped in" not in output:
        raise RuntimeError(f"replay command exited {proc.returncode}: {output[-2000:]!r}")
    return took, peak_kib


async def run() -> list[dict[str, object]]:
    # the collector as `simfleet replay projection` sets it (the command is measured too)
    with tuned_for_service():
        return await _run()


async def _run() -> list[dict[str, object]]:
    async with bench_settings() as settings:
        dsn = dsn_of(settings)
        bootstrap = settings.kafka.kafka_bootstrap_servers or ""
        reference = await _publish(settings)
        pool = await create_pool(dsn, max_size=4)
        broker = build_broker(settings.kafka, bootstrap)
        await broker.start()
        bus = Bus(broker, settings.kafka.topic_prefix)
        applied_at: list[tuple[float, int]] = []
        try:
            # rows left by earlier runs would be swapped away anyway; start from this run's
            await pool.execute("TRUNCATE inbound_sms")
            await _project_live(settings, pool, bus)
            started = time.perf_counter()
            async with asyncio.timeout(REBUILD_S):
                differences = await rebuild(
                    InboundSmsProjection(),
                    dsn=dsn,
                    live_pool=pool,
                    bus=bus,
                    bootstrap=bootstrap,
                    kafka=settings.kafka,
                    from_archive=False,
                    swap=True,
                    progress=lambda done, _total: applied_at.append((time.perf_counter(), done)),
                )
            swapped = time.perf_counter()
            rows = await _rows(pool)
            command_s, command_kib = await _replay_command(settings)
            rows_after_command = await _rows(pool)
        finally:
            await broker.stop()
            await pool.execute("TRUNCATE inbound_sms")
            await pool.close()
    applied = applied_at[-1][1] if applied_at else 0
    if differences or rows != EVENTS or applied < EVENTS or rows_after_command != EVENTS:
        raise RuntimeError(
            f"rebuild: {applied:,} applied, {rows:,} rows, {differences[:3]}; "
            f"{rows_after_command:,} rows after the command"
        )
    first_at, first_n = applied_at[0]
    projecting_s = applied_at[-1][0] - first_at
    whole_s = swapped - started
    labels = {"broker": broker_label(), "processes": 1}
    return [
        {
            "benchmark": "replay rebuild of inbound_sms from the topic",
            "value": round((applied - first_n) / projecting_s),
            "unit": "events/s",
            "target": "reference",
            "detail": f"{EVENTS:,} events, first to last batch into shadow tables; whole "
            f"rebuild {whole_s:.1f} s ({EVENTS / whole_s:,.0f} events/s) "
            "with the shadow tables, 0.2 s idle check and the swap; `simfleet replay projection "
            f"inbound_sms` as a process: {command_s:.1f} s with its start-up",
            **labels,
        },
        ratio_row(
            "replay whole rebuild (swap included) / raw COPY",
            EVENTS / whole_s,
            reference,
            TARGET,
            **labels,
        ),
        {
            "benchmark": "replay command peak memory",
            "value": round(command_kib / 1024, 1),
            "unit": "MiB",
            "target": "reference",
            "detail": f"VmHWM of `simfleet replay projection inbound_sms` over {EVENTS:,} "
            f"events, polled from /proc every 20 ms; {command_s:.1f} s with its start-up",
            **labels,
        },
    ]


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(asyncio.run(run()))
