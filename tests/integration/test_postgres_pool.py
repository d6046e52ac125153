"""The pool's release: no reset round trip, but never a transaction handed on."""

import pytest

from infra.postgres import create_pool

pytestmark = pytest.mark.integration


async def test_a_release_costs_no_reset_query(database_url: str) -> None:
    # one connection, so the second acquire gets the same session back
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'left-behind'")
        async with pool.acquire() as conn:
            # asyncpg's default reset (RESET ALL) would have cleared it
            assert await conn.fetchval("SHOW application_name") == "left-behind"
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE pool_probe (n int)")
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("INSERT INTO pool_probe VALUES (1)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM pool_probe") == 0
    finally:
        await pool.close()
