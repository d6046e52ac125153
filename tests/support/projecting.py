"""Projections running for a block, as the composition root's projector runs them (one runner
per projection, dead letters under ``projection.<name>``); stopped when the block ends."""

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
) -> AsyncIterator[list[ProjectionRunner]]:
    runners = [
        ProjectionRunner(
            projection,
            bootstrap=bootstrap,
            kafka=kafka,
            pool=pool,
            dead_letters=DeadLetters(bus, f"projection.{projection.name}"),
        )
        for projection in projections
    ]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        yield runners
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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
