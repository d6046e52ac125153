"""Projection catch-up: how fast a backlog of sms.received becomes inbound_sms rows.

Target: at least 30% of a raw asyncpg COPY of the same rows into a table of the same shape,
measured in the same run (``bench.copy_reference``), rows and checkpoints in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.copy_reference import broker_label, inbound_rows, ratio_row, raw_copy
from bench.support import bench_settings, dsn_of
from events import codec
from events.sms import SmsReceived
from events.topics import SMS_INBOUND
from infra.bus import Bus
from infra.dead_letters import DeadLetters
from infra.gc_tuning import tuned_for_service
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import Settings
from projections.runner import ProjectionRunner
from projections.sms import InboundSmsProjection

EVENTS = 200_000
CATCH_UP_S = 300  # a deadline against a hang, not a target: a busy machine is slow
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGET = 0.30


def backlog(n: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    out = []
    for i in range(n):
        event = SmsReceived.create(
            producer="bench",
            time=T0,
            gateway_id=f"gw-{i % 4}",
            port=f"{i % 32 + 1}.01",
            sender="+15551230000",
            to=f"+1555{i % 10_000_000:07d}",
            body=f"Your code is {i:06d}",
            received_at=T0 + timedelta(milliseconds=i),
        )
        headers = [(k, v.encode()) for k, v in codec.headers_for(event).items()]
        out.append((event.subject.encode(), codec.encode(event), headers))
    return out


async def lone_event_latencies(bus: Bus, pool: asyncpg.Pool, samples: int = 20) -> list[float]:
    latencies = []
    for i in range(samples):
        event = SmsReceived.create(
            producer="bench",
            time=T0,
            gateway_id="idle",
            sender="+15551230000",
            to="+15550000000",
            body=f"idle {i}",
            received_at=datetime.now(UTC),
        )
        started = time.perf_counter()
        await bus.emit(event)
        async with asyncio.timeout(30):
            while not await pool.fetchval(  # noqa: ASYNC110  (polling the table is the measurement)
                "SELECT 1 FROM inbound_sms WHERE message_id = $1", event.id
            ):
                await asyncio.sleep(0.002)
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.3)  # idle again before the next one
    return latencies


def _worker_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "SIMFLEET_ENV": "test",
        "SIMFLEET_STATE_DIR": str(settings.state_dir),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.kafka_bootstrap_servers or "",
        "DATABASE_URL": dsn_of(settings),
        "TOPIC_PREFIX": settings.kafka.topic_prefix,
        "KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka.kafka_session_timeout_ms),
        "KAFKA_HEARTBEAT_INTERVAL_MS": str(settings.kafka.kafka_heartbeat_interval_ms),
        "KAFKA_IDEMPOTENCE": "true" if settings.kafka.kafka_idempotence else "false",
    }


async def two_process_catch_up(
    settings: Settings, pool: asyncpg.Pool, broker_bus: Bus
) -> list[tuple[float, int]]:
    """The same backlog again, from offset 0, by this process and one more in a new group
    (the partitions split between them); every batch of both, by the machine's clock."""
    await pool.execute("TRUNCATE inbound_sms")
    await pool.execute("DELETE FROM projection_checkpoints WHERE projection = 'inbound_sms'")
    # two members of one group on a busy machine: the short session of the one-process run let
    # late heartbeats evict members over and over (each eviction a rebalance)
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"kafka_session_timeout_ms": 10_000, "kafka_heartbeat_interval_ms": 1_000}
            )
        }
    )
    group = f"{settings.kafka.topic_prefix}projection.inbound_sms.two"
    batches: list[tuple[float, int]] = []
    caught_up = asyncio.Event()

    def on_batch(at: float, applied: int) -> None:
        batches.append((at, applied))
        if sum(n for _, n in batches) >= EVENTS:
            caught_up.set()

    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.projection_worker",
        group,
        env=_worker_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )

    async def read_worker() -> None:
        if worker.stdout is None:
            raise RuntimeError("the worker's output is not piped")
        async for line in worker.stdout:  # its log lines go there too
            if line.startswith(b"batch "):
                _, at, applied = line.decode().split()
                on_batch(float(at), int(applied))

    runner = ProjectionRunner(
        InboundSmsProjection(),
        bootstrap=settings.kafka.kafka_bootstrap_servers or "",
        kafka=settings.kafka,
        pool=pool,
        dead_letters=DeadLetters(broker_bus, "bench"),
        on_batch=lambda applied: on_batch(time.perf_counter(), applied),
        group_id=group,
    )
    tasks = [asyncio.create_task(runner.run()), asyncio.create_task(read_worker())]
    try:
        async with asyncio.timeout(CATCH_UP_S):
            await caught_up.wait()
    finally:
        # the worker goes first: a failed task below must not leave it running
        if worker.returncode is None:
            worker.terminate()
        await worker.wait()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return sorted(batches)


def _rate(batches: list[tuple[float, int]]) -> tuple[float, float]:
    """Events/s from the end of the first batch to the end of the last, and that span."""
    first_at, first_n = batches[0]
    elapsed = batches[-1][0] - first_at
    applied = sum(n for _, n in batches)
    return ((applied - first_n) / elapsed if elapsed > 0 else float("nan")), elapsed


async def run() -> list[dict[str, object]]:
    # the collector as `simfleet` sets it once started (its projector included)
    with tuned_for_service():
        return await _run()


async def _run() -> list[dict[str, object]]:
    # the two-process row needs partitions to split, on Tansu too (one a topic there otherwise)
    async with bench_settings({SMS_INBOUND.name: SMS_INBOUND.partitions}) as settings:
        bootstrap = settings.kafka.kafka_bootstrap_servers or ""
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=10, max_batch_size=512 * 1024
        )
        await producer.start()
        topic = SMS_INBOUND.full_name(settings.kafka.topic_prefix)
        try:
            events = backlog(EVENTS)
            sends = [
                await producer.send(topic, value, key=key, headers=headers)
                for key, value, headers in events
            ]
            await asyncio.gather(*sends)
        finally:
            await producer.stop()
        reference = await raw_copy(dsn_of(settings), inbound_rows([v for _, v, _ in events]))

        pool = await create_pool(dsn_of(settings), max_size=4)
        broker = build_broker(settings.kafka, bootstrap)
        await broker.start()
        batches: list[tuple[float, int]] = []
        cpu: list[float] = []
        caught_up = asyncio.Event()

        def on_batch(applied: int) -> None:
            batches.append((time.perf_counter(), applied))
            cpu.append(time.process_time())
            if sum(n for _, n in batches) >= EVENTS:
                caught_up.set()

        runner = ProjectionRunner(
            InboundSmsProjection(),
            bootstrap=bootstrap,
            kafka=settings.kafka,
            pool=pool,
            dead_letters=DeadLetters(Bus(broker, settings.kafka.topic_prefix), "bench"),
            on_batch=on_batch,
        )
        task = asyncio.create_task(runner.run())
        try:
            async with asyncio.timeout(CATCH_UP_S):  # fail loudly, never hang `make bench`
                await caught_up.wait()
            catch_up = list(batches)
            idle_ms = await lone_event_latencies(Bus(broker, settings.kafka.topic_prefix), pool)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            rows = await pool.fetchval(
                "SELECT count(*) FROM inbound_sms WHERE gateway_id LIKE 'gw-%'"
            )
            two = await two_process_catch_up(
                settings, pool, Bus(broker, settings.kafka.topic_prefix)
            )
            rows_two = await pool.fetchval(
                "SELECT count(*) FROM inbound_sms WHERE gateway_id LIKE 'gw-%'"
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await broker.stop()
            await pool.execute("TRUNCATE inbound_sms")
            await pool.close()
        rate, elapsed = _rate(catch_up)
        rate_two, elapsed_two = _rate(two)
        labels = {"broker": broker_label(), "processes": 1}
        labels_two = {"broker": broker_label(), "processes": 2}
        return [
            {
                "benchmark": "projection catch-up into inbound_sms",
                "value": round(rate),
                "unit": "events/s",
                "target": "reference for the ratio below",
                "detail": f"{EVENTS:,} events, {len(catch_up)} batches, {rows:,} rows, "
                f"projector CPU {100 * (cpu[len(catch_up) - 1] - cpu[0]) / elapsed:.0f}% of one core",
                **labels,
            },
            ratio_row("projection catch-up / raw COPY", rate, reference, TARGET, **labels),
            {
                "benchmark": "projection catch-up into inbound_sms, two projector processes",
                "value": round(rate_two),
                "unit": "events/s",
                "target": "reference for the ratio below",
                "detail": f"{EVENTS:,} events again from offset 0, one consumer group, "
                f"{len(two)} batches in {elapsed_two:.1f} s, {rows_two:,} rows",
                **labels_two,
            },
            ratio_row(
                "projection catch-up / raw COPY, two projector processes",
                rate_two,
                reference,
                TARGET,
                **labels_two,
            ),
            {
                "benchmark": "projection: lone event applied when idle (p50 / max)",
                "value": round(statistics.median(idle_ms), 1),
                "unit": "ms",
                "target": "< 100 ms",
                "detail": f"max {max(idle_ms):.1f} ms over {len(idle_ms)} events",
                **labels,
            },
        ]


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(asyncio.run(run()))
