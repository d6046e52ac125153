"""One more projector process for the catch-up benchmark: the inbound_sms projection in the
given consumer group, printing ``batch <monotonic clock> <events applied>`` per batch (the
clock is the machine's, so the parent can merge the lines with its own) until terminated.

    python -m bench.projection_worker GROUP   (settings from the environment)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

from infra import gc_tuning
from infra.bus import Bus
from infra.dead_letters import DeadLetters
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import Settings
from projections.runner import ProjectionRunner
from projections.sms import InboundSmsProjection


async def main(group_id: str) -> None:
    settings = Settings()
    bootstrap = settings.kafka.kafka_bootstrap_servers or ""
    if settings.postgres.database_url is None:
        raise SystemExit("DATABASE_URL is required")
    pool = await create_pool(settings.postgres.database_url.get_secret_value(), max_size=2)
    broker = build_broker(settings.kafka, bootstrap)
    await broker.start()

    def on_batch(applied: int) -> None:
        sys.stdout.write(f"batch {time.perf_counter()} {applied}\n")
        sys.stdout.flush()

    runner = ProjectionRunner(
        InboundSmsProjection(),
        bootstrap=bootstrap,
        kafka=settings.kafka,
        pool=pool,
        dead_letters=DeadLetters(Bus(broker, settings.kafka.topic_prefix), "bench"),
        on_batch=on_batch,
        group_id=group_id,
    )
    gc_tuning.tune_for_service()  # as `simfleet run` does once started
    task = asyncio.create_task(runner.run())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await broker.stop()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
