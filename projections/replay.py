"""Rebuild projections from the events, verify them, and re-publish archived events.

``rebuild`` projects from offset 0 of the projection's topics (or from ``event_log``) into a
shadow schema while the live projection keeps serving reads, catches up with the live
checkpoints, then swaps the rows in one transaction holding the live checkpoint rows locked —
readers see the old rows until the commit and the new ones after it. ``verify`` rebuilds the
same way and compares row by row instead of swapping. The shadow schema itself (made, swapped
in, compared) is ``projections.shadow``; reading, deciding and writing a batch is the runner's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import asyncpg

from events import decode
from infra.bus import Bus
from infra.dead_letters import DeadLetters
from infra.settings import KafkaSettings
from projections import checkpoints
from projections.batches import Record
from projections.checkpoints import Positions
from projections.runner import Projection, ProjectionRunner
from projections.shadow import Shadow, behind, differences, shadow_tables, swap_in

Progress = Callable[[int, int | None], None]  # (events applied so far, total if known)

ARCHIVE_PAGE = """
SELECT id, topic, partition, "offset", key, payload::text AS payload FROM public.event_log
WHERE topic = ANY($1::text[]) AND (topic, partition, "offset") > ($2, $3, $4)
ORDER BY topic, partition, "offset" LIMIT $5
"""
COUNT_ARCHIVED = """
SELECT count(*) FROM event_log
WHERE ($1::text[] IS NULL OR type = ANY($1)) AND ($2::timestamptz IS NULL OR time >= $2)
  AND ($3::timestamptz IS NULL OR time < $3)
"""
SELECT_ARCHIVED = """
SELECT topic, partition, "offset", payload::text AS payload FROM event_log
WHERE ($1::text[] IS NULL OR type = ANY($1)) AND ($2::timestamptz IS NULL OR time >= $2)
  AND ($3::timestamptz IS NULL OR time < $3)
  AND (topic, partition, "offset") > ($4, $5, $6)
ORDER BY topic, partition, "offset" LIMIT $7
"""
STALL_S = 60.0  # behind the live position with no batch applied for this long: give up, loudly


class ReplayError(RuntimeError):
    pass


@contextlib.asynccontextmanager
async def projecting_from_topics(
    shadow: Shadow,
    *,
    bootstrap: str,
    kafka: KafkaSettings,
    bus: Bus,
    live_pool: asyncpg.Pool,
    progress: Progress,
    idle_s: float = 0.2,
    stall_s: float = STALL_S,
) -> AsyncIterator[None]:
    """Projects from offset 0; enters once the shadow reached the live checkpoints and is idle,
    and keeps projecting until the block exits. Raises ``ReplayError`` when it stalls behind."""
    live = await shadow.live_checkpoints(live_pool)
    total = sum(offset + 1 for offset in live.values()) or None

    def on_batch(applied: int) -> None:
        shadow.applied += applied
        shadow.last_batch_at = time.monotonic()
        progress(shadow.applied, total)

    runner = ProjectionRunner(
        shadow.projection,
        bootstrap=bootstrap,
        kafka=kafka,
        pool=shadow.pool,
        dead_letters=DeadLetters(bus, f"replay.{shadow.projection.name}"),
        on_batch=on_batch,
        in_group=False,
    )
    task = asyncio.create_task(runner.run())
    try:
        await _caught_up(shadow, task, live_pool, idle_s=idle_s, stall_s=stall_s)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _caught_up(
    shadow: Shadow,
    task: asyncio.Task[None],
    live_pool: asyncpg.Pool,
    *,
    idle_s: float,
    stall_s: float,
) -> None:
    """Returns once the shadow reached the live checkpoints and has been idle for ``idle_s``;
    raises ``ReplayError`` after ``stall_s`` behind them without a batch (and the runner's own
    error should it stop)."""
    while True:
        await asyncio.sleep(0.05)
        if task.done():
            await task
        live = await shadow.live_checkpoints(live_pool)
        quiet_s = time.monotonic() - shadow.last_batch_at
        rebuilt = await shadow.checkpoints()
        if not behind(rebuilt, live):
            if quiet_s > idle_s:
                return
        elif quiet_s > stall_s:
            raise ReplayError(_stalled(rebuilt, live, quiet_s))


def _stalled(rebuilt: Positions, live: Positions, s: float) -> str:
    lagging = [
        f"{topic}[{partition}] at {rebuilt.get((topic, partition), -1)} of {offset}"
        for (topic, partition), offset in sorted(live.items())
        if rebuilt.get((topic, partition), -1) < offset
    ]
    return f"no event read for {s:.0f} s while behind the live projection: {', '.join(lagging)}"


async def fill_from_archive(shadow: Shadow, *, live_pool: asyncpg.Pool, progress: Progress) -> None:
    total = await live_pool.fetchval(
        "SELECT count(*) FROM event_log WHERE topic = ANY($1::text[])", shadow.topics
    )
    while True:
        rows = await live_pool.fetch(ARCHIVE_PAGE, shadow.topics, *shadow.archive_position, 5000)
        if not rows:
            return
        records = [_archived(r) for r in rows]
        async with shadow.pool.acquire() as conn, conn.transaction():
            await shadow.projection.apply(conn, records)
            # a page is in offset order: each partition's last record is where it now stands
            reached = {(r.topic, r.partition): r.offset for r in records}
            await checkpoints.advance(conn, shadow.projection.name, reached)
        shadow.applied += len(records)
        progress(shadow.applied, total)
        last = rows[-1]
        shadow.archive_position = (last["topic"], last["partition"], last["offset"])


def _archived(row: asyncpg.Record) -> Record:
    key = row["key"].encode() if row["key"] is not None else None
    payload = row["payload"]
    return Record(
        decode(payload), row["topic"], row["partition"], row["offset"], key, payload.encode()
    )


async def finish(
    shadow: Shadow, live_pool: asyncpg.Pool, *, swap: bool, refill: Callable[[], object]
) -> list[str]:
    """Under the live checkpoint lock: swap the rows in, or return the differences."""
    for _ in range(50):
        async with live_pool.acquire() as conn, conn.transaction():
            live = await shadow.lock_live_checkpoints(conn)
            rebuilt = await shadow.checkpoints()
            if behind(rebuilt, live) or (not swap and behind(live, rebuilt)):
                pass  # positions differ: release the lock and let the lagging side catch up
            elif swap:
                await swap_in(conn, shadow)
                return []
            else:
                return await differences(conn, shadow)
        await asyncio.sleep(0.2)
        await _await_maybe(refill())
    raise ReplayError("the rebuilt and live positions never met; is the projector running?")


async def _await_maybe(value: object) -> None:
    if asyncio.iscoroutine(value):
        await value


async def republish(
    live_pool: asyncpg.Pool,
    bus: Bus,
    *,
    types: list[str] | None,
    since: datetime | None,
    until: datetime | None,
    progress: Progress,
    page: int = 2000,
) -> int:
    """Re-publishes archived events unchanged (same ids), so every consumer de-duplicates."""
    total = await live_pool.fetchval(COUNT_ARCHIVED, types, since, until)
    sent, after = 0, ("", -1, -1)
    while True:
        rows = await live_pool.fetch(
            SELECT_ARCHIVED,
            types,
            since,
            until,
            *after,
            page,
        )
        if not rows:
            return sent
        await bus.emit_many([decode(r["payload"]) for r in rows])
        sent += len(rows)
        progress(sent, total)
        last = rows[-1]
        after = (last["topic"], last["partition"], last["offset"])


async def rebuild(
    projection: Projection,
    *,
    dsn: str,
    live_pool: asyncpg.Pool,
    bus: Bus,
    bootstrap: str,
    kafka: KafkaSettings,
    from_archive: bool,
    swap: bool,
    progress: Progress,
    stall_s: float = STALL_S,
) -> list[str]:
    """Rebuilds into shadow tables, then swaps them in (``swap``) or returns the differences."""
    async with shadow_tables(dsn, projection, kafka) as shadow:
        if from_archive:

            async def more_from_archive() -> None:
                await fill_from_archive(shadow, live_pool=live_pool, progress=progress)

            await more_from_archive()
            return await finish(shadow, live_pool, swap=swap, refill=more_from_archive)
        async with projecting_from_topics(
            shadow,
            bootstrap=bootstrap,
            kafka=kafka,
            bus=bus,
            live_pool=live_pool,
            progress=progress,
            stall_s=stall_s,
        ):
            return await finish(shadow, live_pool, swap=swap, refill=lambda: None)
