import shutil
from pathlib import Path

import asyncpg
import pytest

from infra.postgres import MIGRATIONS_DIR, MigrationError, migrate

pytestmark = pytest.mark.integration

TABLES = {
    "event_log",
    "projection_checkpoints",
    "sims",
    "sim_numbers",
    "inbound_sms",
    "resellers",
    "reseller_sims",
    "reseller_webhooks",
    "webhook_deliveries",
    "helix_api_logs",
    "gateways",
    "gateway_ports",
    "token_cache",
    "schema_migrations",
}


async def test_migrations_apply_twice_without_error(database_url: str) -> None:
    # the per-test database is a clone of the migrated template: nothing is pending
    assert await migrate(database_url) == []
    assert await migrate(database_url) == []
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        unique = await conn.fetch(
            "SELECT indexdef FROM pg_indexes WHERE indexdef LIKE 'CREATE UNIQUE%'"
        )
    finally:
        await conn.close()
    assert {r["tablename"] for r in rows} >= TABLES
    unique_defs = " ".join(r["indexdef"] for r in unique)
    assert "sims USING btree (iccid)" in unique_defs
    assert "inbound_sms USING btree (message_id)" in unique_defs
    assert "webhook_deliveries USING btree (message_id, endpoint)" in unique_defs


async def test_a_fresh_database_gets_every_migration(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    applied = await migrate(database_url)
    assert applied[0] == "0001_event_log"
    assert len(applied) == len(list(MIGRATIONS_DIR.glob("*.sql")))


async def test_an_edited_landed_migration_is_refused(database_url: str, tmp_path: Path) -> None:
    edited = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, edited)
    first = sorted(edited.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(database_url, edited)


async def test_a_canceled_sim_is_cancelled_after_the_spelling_migration(
    database_url: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        before = tmp_path / "migrations"
        before.mkdir()
        for path in MIGRATIONS_DIR.glob("*.sql"):
            if path.name < "0150":
                shutil.copy(path, before / path.name)
        await migrate(database_url, before)
        await conn.execute("INSERT INTO sims (iccid, status) VALUES ('8901', 'canceled')")
        await migrate(database_url)
        assert await conn.fetchval("SELECT status FROM sims WHERE iccid = '8901'") == "cancelled"
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO sims (iccid, status) VALUES ('8902', 'canceled')")
    finally:
        await conn.close()
