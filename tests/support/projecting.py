"""Projections running for a block, as the composition root's projector runs them (one runner
for them all, dead letters under ``projection.<name>``); stopped when the block ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

import asyncpg

from infra.bus import Bus
from infra.dead_letters import DeadLetters
from infra.settings import KafkaSettings
from projections.runner import Projection, ProjectionRunner


@contextlib.asynccontextmanager
async def projecting(
    projections: Iterable[Projection],
    *,
    bootstrap: str,
    kafka: KafkaSettings,
    pool: asyncpg.Pool,
    bus: Bus,
) -> AsyncIterator[ProjectionRunner]:
    chosen = list(projections)
    runner = ProjectionRunner(
        chosen,
        bootstrap=bootstrap,
        kafka=kafka,
        pool=pool,
        dead_letters={p.name: DeadLetters(bus, f"projection.{p.name}") for p in chosen},
        # a group of this set's own: a test may nest another set, which must not take a share
        # of the partitions of a topic both read
        group_id=f"{kafka.topic_prefix}projecting.{','.join(p.name for p in chosen)}",
    )
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def running(runner: ProjectionRunner) -> AsyncIterator[asyncio.Task[None]]:
    """One runner running for the block, its task given to the test (to see it did not give
    up); cancelled when the block ends."""
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
