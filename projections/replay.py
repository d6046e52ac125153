"""Rebuild projections from the events, verify them, and re-publish archived events.

``rebuild`` projects from offset 0 of the projection's topics (or from ``event_log``) into a
shadow schema while the live projection keeps serving reads, catches up with the live
checkpoints, then swaps the rows in one transaction holding the live checkpoint rows locked —
readers see the old rows until the commit and the new ones after it. ``verify`` rebuilds the
same way and compares row by row instead of swapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from events import decode
from infra.dead_letters import DeadLetters
from infra.kafka import Bus
from infra.postgres import create_pool
from infra.settings import KafkaSettings
from projections.batches import Record
from projections.runner import Projection, ProjectionRunner

Progress = Callable[[int, int | None], None]  # (events applied so far, total if known)

# only the topics the projection reads under this prefix: a checkpoint left by another prefix
# (or a topic since dropped) is a position the rebuild can never reach
CHECKPOINTS = """
SELECT topic, partition, "offset" FROM projection_checkpoints
WHERE projection = $1 AND topic = ANY($2::text[])
"""
LIVE_CHECKPOINTS = CHECKPOINTS.replace(
    "FROM projection_checkpoints", "FROM public.projection_checkpoints"
)
LOCK_LIVE_CHECKPOINTS = LIVE_CHECKPOINTS + " FOR UPDATE"
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
# indexes of a table that no constraint owns (unique and primary keys keep theirs): their
# definitions are all it takes to build them again
PLAIN_INDEXES = """
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = $1::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
ORDER BY c.relname
"""
VOLATILE_DEFAULTS = ("nextval(", "now()")
STALL_S = 60.0  # behind the live position with no batch applied for this long: give up, loudly
# Table and schema names below come from the projections' own declarations, never from input.


class ReplayError(RuntimeError):
    pass


@dataclass
class Shadow:
    projection: Projection
    topics: list[str]
    schema: str
    pool: asyncpg.Pool
    applied: int = 0
    last_batch_at: float = field(default_factory=time.monotonic)
    archive_position: tuple[str, int, int] = ("", -1, -1)

    async def checkpoints(self) -> dict[tuple[str, int], int]:
        return await _checkpoints(self.pool, self.projection.name, self.topics, CHECKPOINTS)

    async def live_checkpoints(self, live_pool: asyncpg.Pool) -> dict[tuple[str, int], int]:
        return await _checkpoints(live_pool, self.projection.name, self.topics)


def appends_only(projection: Projection) -> bool:
    """A projection may say ``appends_only = True``: its ``apply`` only adds rows and reads its
    tables by nothing but their unique keys (a conflict clause). Its shadow tables then fill
    without their plain indexes, which nobody reads there: the swap builds them once over the
    rows on the live table anyway, and each row went into every one of them twice before."""
    return getattr(projection, "appends_only", False) is True


def _shadow_schema(name: str) -> str:
    return f"replay_{name}"


@contextlib.asynccontextmanager
async def shadow_tables(
    dsn: str, projection: Projection, kafka: KafkaSettings
) -> AsyncIterator[Shadow]:
    schema = _shadow_schema(projection.name)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        for table in (*projection.tables, "projection_checkpoints"):
            await conn.execute(f"CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)")
        if appends_only(projection):
            for table in projection.tables:
                for index in await conn.fetch(PLAIN_INDEXES, f"{schema}.{table}"):
                    await conn.execute(f"DROP INDEX {schema}.{index['name']}")
    finally:
        await conn.close()
    pool = await create_pool(dsn, min_size=1, max_size=4, search_path=f"{schema},public")
    try:
        topics = [t.full_name(kafka.topic_prefix) for t in projection.topics]
        yield Shadow(projection, topics, schema, pool)
    finally:
        await pool.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


async def _checkpoints(
    pool: asyncpg.Pool, name: str, topics: list[str], sql: str = LIVE_CHECKPOINTS
) -> dict[tuple[str, int], int]:
    rows = await pool.fetch(sql, name, topics)
    return {(r["topic"], r["partition"]): r["offset"] for r in rows}


def _behind(shadow: dict[tuple[str, int], int], live: dict[tuple[str, int], int]) -> bool:
    return any(shadow.get(position, -1) < offset for position, offset in live.items())


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
        while True:
            await asyncio.sleep(0.05)
            if task.done():
                await task
            live = await shadow.live_checkpoints(live_pool)
            quiet_s = time.monotonic() - shadow.last_batch_at
            rebuilt = await shadow.checkpoints()
            if not _behind(rebuilt, live):
                if quiet_s > idle_s:
                    break
            elif quiet_s > stall_s:
                raise ReplayError(_stalled(rebuilt, live, quiet_s))
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _stalled(
    rebuilt: dict[tuple[str, int], int], live: dict[tuple[str, int], int], s: float
) -> str:
    behind = [
        f"{topic}[{partition}] at {rebuilt.get((topic, partition), -1)} of {offset}"
        for (topic, partition), offset in sorted(live.items())
        if rebuilt.get((topic, partition), -1) < offset
    ]
    return f"no event read for {s:.0f} s while behind the live projection: {', '.join(behind)}"


async def fill_from_archive(shadow: Shadow, *, live_pool: asyncpg.Pool, progress: Progress) -> None:
    total = await live_pool.fetchval(
        "SELECT count(*) FROM event_log WHERE topic = ANY($1::text[])", shadow.topics
    )
    while True:
        rows = await live_pool.fetch(ARCHIVE_PAGE, shadow.topics, *shadow.archive_position, 5000)
        if not rows:
            return
        records = [
            Record(
                decode(r["payload"]),
                r["topic"],
                r["partition"],
                r["offset"],
                r["key"].encode() if r["key"] is not None else None,
                r["payload"].encode(),
            )
            for r in rows
        ]
        async with shadow.pool.acquire() as conn, conn.transaction():
            await shadow.projection.apply(conn, records)
            await _save_checkpoints(conn, shadow.projection.name, records)
        shadow.applied += len(records)
        progress(shadow.applied, total)
        last = rows[-1]
        shadow.archive_position = (last["topic"], last["partition"], last["offset"])


async def _save_checkpoints(conn: asyncpg.Connection, name: str, records: list[Record]) -> None:
    last: dict[tuple[str, int], int] = {}
    for r in records:
        last[(r.topic, r.partition)] = r.offset
    await conn.executemany(
        'INSERT INTO projection_checkpoints (projection, topic, partition, "offset") '
        "VALUES ($1, $2, $3, $4) ON CONFLICT (projection, topic, partition) "
        'DO UPDATE SET "offset" = GREATEST(projection_checkpoints."offset", EXCLUDED."offset")',
        [(name, t, p, o) for (t, p), o in last.items()],
    )


async def compared_columns(conn: asyncpg.Connection, table: str) -> list[str]:
    """Columns that the events determine (not serial ids or insert-time defaults)."""
    rows = await conn.fetch(
        "SELECT column_name, column_default FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return [
        r["column_name"]
        for r in rows
        if not any(v in (r["column_default"] or "") for v in VOLATILE_DEFAULTS)
    ]


async def differences(conn: asyncpg.Connection, shadow: Shadow, limit: int = 20) -> list[str]:
    found = []
    for table in shadow.projection.tables:
        cols = ", ".join(f'"{c}"' for c in await compared_columns(conn, table))
        for side, a, b in (
            ("live only", "public", shadow.schema),
            ("rebuilt only", shadow.schema, "public"),
        ):
            rows = await conn.fetch(
                f"SELECT {cols} FROM {a}.{table} EXCEPT ALL SELECT {cols} FROM {b}.{table} LIMIT {limit}"  # noqa: S608
            )
            found += [f"{table} {side}: {dict(r)}" for r in rows]
    return found


async def finish(
    shadow: Shadow, live_pool: asyncpg.Pool, *, swap: bool, refill: Callable[[], object]
) -> list[str]:
    """Under the live checkpoint lock: swap the rows in, or return the differences."""
    for _ in range(50):
        async with live_pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(LOCK_LIVE_CHECKPOINTS, shadow.projection.name, shadow.topics)
            live = {(r["topic"], r["partition"]): r["offset"] for r in rows}
            rebuilt = await shadow.checkpoints()
            if _behind(rebuilt, live) or (not swap and _behind(live, rebuilt)):
                pass  # positions differ: release the lock and let the lagging side catch up
            elif swap:
                await _swap(conn, shadow)
                return []
            else:
                return await differences(conn, shadow)
        await asyncio.sleep(0.2)
        await _await_maybe(refill())
    raise ReplayError("the rebuilt and live positions never met; is the projector running?")


async def _await_maybe(value: object) -> None:
    if asyncio.iscoroutine(value):
        await value


async def _swap(conn: asyncpg.Connection, shadow: Shadow) -> None:
    tables = ", ".join(f"public.{t}" for t in shadow.projection.tables)
    await conn.execute(f"TRUNCATE {tables}")
    for table in shadow.projection.tables:
        # TRUNCATE holds the table exclusively until the commit anyway: building its plain
        # indexes once over the rows (a sort) beats growing them row by row
        plain = await conn.fetch(PLAIN_INDEXES, f"public.{table}")
        for index in plain:
            await conn.execute(f"DROP INDEX public.{index['name']}")
        await conn.execute(f"INSERT INTO public.{table} SELECT * FROM {shadow.schema}.{table}")  # noqa: S608
        for index in plain:
            await conn.execute(index["definition"])
    await conn.execute(
        "DELETE FROM public.projection_checkpoints WHERE projection = $1", shadow.projection.name
    )
    await conn.execute(
        f"INSERT INTO public.projection_checkpoints SELECT * FROM {shadow.schema}.projection_checkpoints"  # noqa: S608
    )


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
