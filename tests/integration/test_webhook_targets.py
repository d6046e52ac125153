"""The endpoint directory the delivery tasks sign with: one read per endpoint however many
deliveries ask at once, and a forgotten endpoint read afresh."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from cryptography.fernet import Fernet

from consumers.webhooks.targets import EndpointDirectory
from infra.postgres import create_pool
from infra.webhook_signing import SecretBox, generate_secret

pytestmark = pytest.mark.integration

NOW = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


async def endpoint(pool: asyncpg.Pool, box: SecretBox, endpoint_id: str, secret: str) -> None:
    await pool.execute("INSERT INTO resellers VALUES ('acme', 'acme', $1)", NOW)
    await pool.execute(
        "INSERT INTO reseller_webhooks (endpoint_id, reseller_id, url, sealed_secret, created_at) "
        "VALUES ($1, 'acme', 'https://hooks.example.com/in', $2, $3)",
        endpoint_id,
        box.seal(secret),
        NOW,
    )


async def test_a_crowd_of_deliveries_shares_one_read(pool: asyncpg.Pool) -> None:
    box = SecretBox([Fernet.generate_key()])
    secret = generate_secret()
    await endpoint(pool, box, "acme-main", secret)
    directory = EndpointDirectory(pool, box, ttl_s=60.0)

    found = await asyncio.gather(*(directory.get("acme-main", NOW) for _ in range(200)))

    first = found[0]
    assert first is not None
    assert first.target.secrets == (secret,)
    assert first.enabled
    # one object: one query and one unsealing served all 200, not 200 of each
    assert all(e is first for e in found)
    assert await directory.get("acme-main", NOW) is first  # and it is cached


async def test_a_waiter_cancelled_does_not_fail_the_others(pool: asyncpg.Pool) -> None:
    box = SecretBox([Fernet.generate_key()])
    await endpoint(pool, box, "acme-main", generate_secret())
    directory = EndpointDirectory(pool, box, ttl_s=60.0)

    first = asyncio.create_task(directory.get("acme-main", NOW))
    second = asyncio.create_task(directory.get("acme-main", NOW))
    await asyncio.sleep(0)
    first.cancel()

    found = await second
    assert found is not None
    assert found.target.endpoint_id == "acme-main"
    assert first.cancelled()


async def test_a_forgotten_endpoint_is_read_afresh(pool: asyncpg.Pool) -> None:
    box = SecretBox([Fernet.generate_key()])
    await endpoint(pool, box, "acme-main", generate_secret())
    directory = EndpointDirectory(pool, box, ttl_s=60.0)
    before = await directory.get("acme-main", NOW)
    assert before is not None
    assert before.enabled

    await pool.execute("UPDATE reseller_webhooks SET enabled = false")
    assert await directory.get("acme-main", NOW) is before  # within the cache's time
    directory.forget("acme-main")

    after = await directory.get("acme-main", NOW)
    assert after is not None
    assert not after.enabled


async def test_a_read_under_way_when_forgotten_fills_no_cache(pool: asyncpg.Pool) -> None:
    box = SecretBox([Fernet.generate_key()])
    await endpoint(pool, box, "acme-main", generate_secret())
    directory = EndpointDirectory(pool, box, ttl_s=60.0)

    stale = asyncio.create_task(directory.get("acme-main", NOW))
    await asyncio.sleep(0)  # the read has started
    directory.forget("acme-main")
    await pool.execute("UPDATE reseller_webhooks SET enabled = false")
    await stale

    after = await directory.get("acme-main", NOW)
    assert after is not None
    assert not after.enabled
