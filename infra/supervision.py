"""Background loops that cannot fail silently.

A loop that ends while its block is still running is a bug or an unexpected failure: it is
logged and ``stop`` is set, so the process shuts down (and a supervisor restarts it) instead of
living on with a part missing. An exception raised while the block is being left is logged too,
never discarded with the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import structlog

log = structlog.get_logger("simfleet")


@contextlib.asynccontextmanager
async def supervised(
    name: str,
    stop: asyncio.Event,
    *coros: Coroutine[Any, Any, Any],
    finishing: asyncio.Event | None = None,
) -> AsyncIterator[None]:
    """Runs ``coros`` as tasks for the block; one ending unexpectedly sets ``stop``.

    A loop may return normally once ``finishing`` is set (its owner is shutting down); failing
    is unexpected at any time."""
    reported: set[asyncio.Task[Any]] = set()

    def on_done(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        if finishing is not None and finishing.is_set() and task.exception() is None:
            return
        reported.add(task)
        log.error(
            "component_stopped_unexpectedly",
            component=name,
            task=task.get_name(),
            error=repr(task.exception()),
        )
        stop.set()

    tasks = [asyncio.create_task(c, name=f"{name}:{i}") for i, c in enumerate(coros)]
    for task in tasks:
        task.add_done_callback(on_done)
    try:
        yield
    finally:
        for task in tasks:
            task.remove_done_callback(on_done)
            task.cancel()
        await _stopped(name, tasks, reported)


async def _stopped(
    name: str, tasks: list[asyncio.Task[Any]], reported: set[asyncio.Task[Any]]
) -> None:
    """Waits for the cancelled tasks; a failure not reported yet is logged, never discarded."""
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for task, outcome in zip(tasks, outcomes, strict=True):
        failed = isinstance(outcome, BaseException)
        if failed and not isinstance(outcome, asyncio.CancelledError) and task not in reported:
            log.error(
                "component_failed_while_stopping",
                component=name,
                task=task.get_name(),
                error=repr(outcome),
            )
