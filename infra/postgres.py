"""Postgres access: an asyncpg pool with a jsonb codec, and the migration runner.

Migrations are the numbered ``infra/migrations/NNNN_name.sql`` files, applied in order inside
one transaction each, under an advisory lock so concurrent starters never race. A landed
migration must never change: its checksum is recorded and compared on every run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x51F1EE7  # arbitrary, fixed: the advisory lock all migrators share

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        version, _, name = path.stem.partition("_")
        if not version.isdigit():
            raise MigrationError(f"migration file name must start with a number: {path.name}")
        found.append(Migration(int(version), name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migrations share a version number")
    return found


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server, as the same account."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def drop_database(url: str, name: str) -> None:
    """Database ``name`` on ``url``'s server gone, its sessions ended (a scratch database)."""
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection released without asyncpg's reset query (advisory unlock, CLOSE ALL,
    UNLISTEN, RESET ALL): a round trip to Postgres on every release, the busiest consumers'
    most frequent one. Nothing here keeps session state past a release — advisory locks are
    transaction-scoped (``pg_advisory_xact_lock``), nobody LISTENs, SETs or opens cursors
    outside a transaction; the one session lock (migrations) is on a connection of its own.
    asyncpg still rolls back a transaction left open on release."""

    def get_reset_query(self) -> str:
        return ""


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, search_path: str | None = None
) -> asyncpg.Pool:
    settings = {"search_path": search_path} if search_path else None
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings=settings,
        connection_class=PooledConnection,
    )


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Applies pending migrations; returns the names applied. Safe to call concurrently."""
    migrations = load_migrations(directory)
    conn: Any = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(CREATE_MIGRATIONS_TABLE)
            applied = {r["version"]: r for r in await conn.fetch(SELECT_APPLIED)}
            done = []
            for migration in migrations:
                row = applied.get(migration.version)
                if row is not None:
                    if row["checksum"] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} changed after it "
                            "was applied; add a new migration instead of editing a landed one"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        INSERT_APPLIED, migration.version, migration.name, migration.checksum
                    )
                done.append(f"{migration.version:04d}_{migration.name}")
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
