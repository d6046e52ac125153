"""A projection's shadow tables: where a rebuild (``projections.replay``) writes its rows.

``shadow_tables`` makes a schema ``replay_<projection>`` holding empty copies of the
projection's tables and of ``projection_checkpoints``, and drops it afterwards. Once the rebuild
caught up, ``swap_in`` replaces the live rows with the shadow's (in the caller's transaction,
which holds the live checkpoint rows locked), or ``differences`` names the rows that differ.
Table and schema names here come from the projections' own declarations, never from input.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg

from infra.postgres import create_pool
from infra.settings import KafkaSettings
from projections.checkpoints import Positions, positions_of
from projections.runner import Projection

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


@dataclass
class Shadow:
    projection: Projection
    topics: list[str]
    schema: str
    pool: asyncpg.Pool
    applied: int = 0
    last_batch_at: float = field(default_factory=time.monotonic)
    archive_position: tuple[str, int, int] = ("", -1, -1)

    async def checkpoints(self) -> Positions:
        return positions_of(await self.pool.fetch(CHECKPOINTS, self.projection.name, self.topics))

    async def live_checkpoints(self, live_pool: asyncpg.Pool) -> Positions:
        rows = await live_pool.fetch(LIVE_CHECKPOINTS, self.projection.name, self.topics)
        return positions_of(rows)

    async def lock_live_checkpoints(self, conn: asyncpg.Connection) -> Positions:
        """The live positions, their rows locked until ``conn``'s transaction ends."""
        rows = await conn.fetch(LOCK_LIVE_CHECKPOINTS, self.projection.name, self.topics)
        return positions_of(rows)


def behind(shadow: Positions, live: Positions) -> bool:
    return any(shadow.get(position, -1) < offset for position, offset in live.items())


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


async def swap_in(conn: asyncpg.Connection, shadow: Shadow) -> None:
    """The live rows and checkpoints become the shadow's, in ``conn``'s transaction."""
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
