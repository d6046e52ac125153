"""The shared Helix token is kept sealed in ``token_cache``: the row opens only with the
deployment's sealing key, and a second process with that key reuses it without a new grant."""

from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from infra.helix.client import HelixClient
from infra.http import serve_http
from infra.postgres import create_pool
from infra.settings import HelixSettings
from infra.webhook_signing import SecretBox
from sandbox.helix import create_helix_sandbox
from sandbox.helix_world import HelixWorld, make_iccid, make_imei

pytestmark = pytest.mark.integration

PASSWORD = "grant-password-for-tests"


@pytest.fixture
async def carrier() -> AsyncIterator[tuple[HelixWorld, str]]:
    world = HelixWorld(client_id="c", username="u", password=PASSWORD)
    async with serve_http(create_helix_sandbox(world)) as url:
        yield world, url


async def a_process(
    url: str, database_url: str, box: SecretBox
) -> tuple[HelixClient, list[Callable[[], Awaitable[None]]]]:
    settings = HelixSettings(
        api_base=url,
        token_url=f"{url}/oauth/token",
        client_id="c",
        grant_username="u",
        grant_password=SecretStr(PASSWORD),
        activation_client_id=1,
        plan_id=1,
    )
    http = httpx.AsyncClient(base_url=url)
    pool = await create_pool(database_url, min_size=1, max_size=2)

    async def ignore(_event: object) -> None:
        return None

    return HelixClient(http, settings, pool, ignore, box=box), [http.aclose, pool.close]


async def test_the_token_row_is_sealed_and_shared(
    carrier: tuple[HelixWorld, str], database_url: str
) -> None:
    world, url = carrier
    box = SecretBox([Fernet.generate_key()])
    first, held = await a_process(url, database_url, box)
    second, more = await a_process(url, database_url, box)
    try:
        await first.activate(make_iccid(901), make_imei(901))
        conn = await asyncpg.connect(database_url)
        try:
            stored = await conn.fetchval(
                "SELECT access_token FROM token_cache WHERE name = 'helix'"
            )
        finally:
            await conn.close()
        issued = list(world.tokens)
        assert len(issued) == 1
        assert issued[0] not in stored  # not the token, nor anything containing it
        assert box.unseal(stored) == issued[0]

        await second.activate(make_iccid(902), make_imei(902))
        assert world.token_requests == 1  # the second process opened the shared row
    finally:
        for close in [*held, *more]:
            await close()


async def test_a_row_sealed_with_another_key_is_refetched_not_trusted(
    carrier: tuple[HelixWorld, str], database_url: str
) -> None:
    world, url = carrier
    old, held = await a_process(url, database_url, SecretBox([Fernet.generate_key()]))
    new, more = await a_process(url, database_url, SecretBox([Fernet.generate_key()]))
    try:
        await old.activate(make_iccid(903), make_imei(903))
        await new.activate(make_iccid(904), make_imei(904))
        assert world.token_requests == 2
    finally:
        for close in [*held, *more]:
            await close()
