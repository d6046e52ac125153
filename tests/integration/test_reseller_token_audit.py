"""Every use of a reseller token is audited, end to end: requests through the dashboard's
``/reseller/v1`` and ``/portal`` → ``reseller.token_used`` on Kafka → the ``operator_audit``
projection (the real engine) → the operator's ``/audit`` (filtered by actor) and the reseller's
own ``/portal/activity``; rebuilt the same by a replay of the audit; a reseller never sees
another's uses; no token in any of it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from dashboard.app import create_dashboard_app
from events.topics import RESELLER_USAGE
from infra.clock import SystemClock
from infra.settings import Settings
from producers.token_uses import TokenUses
from projections.audit import OperatorAuditProjection
from projections.replay import rebuild
from tests.integration.test_dashboard import PASSWORD, USER, dashboard_settings
from tests.support.eventually import eventually
from tests.support.portal_world import PortalWorld, portal_world

pytestmark = pytest.mark.integration

USES = """
SELECT actor, channel, target, events, subjects FROM operator_audit WHERE action = 'use-token'
ORDER BY actor, target
"""


@pytest.fixture
async def portal(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[PortalWorld]:
    async with portal_world(settings, kafka_bootstrap) as portal:
        yield portal


def dashboard_of(portal: PortalWorld) -> FastAPI:
    world = portal.world
    return create_dashboard_app(
        dashboard_settings(world.settings), world.pool, world.bus, SystemClock()
    )


def client(
    app: FastAPI,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://dashboard", headers=headers,
        auth=auth,
    )  # fmt: skip


async def uses(pool: asyncpg.Pool, count: int) -> list[tuple[str, str, str, int, list[str]]]:
    rows = await eventually(
        lambda: pool.fetch(USES), until=lambda found: len(found) >= count, within=30
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def sign_in(browser: httpx.AsyncClient, token: str) -> None:
    answer = await browser.post("/portal/login", data={"token": token})
    assert answer.status_code == 303, answer.text


async def test_a_read_is_audited_as_its_token_survives_a_replay_and_shows_only_to_its_reseller(
    portal: PortalWorld, kafka_bootstrap: str, database_url: str
) -> None:
    world = portal.world
    for reseller_id in ("acme", "globex"):
        await world.reseller(reseller_id, {})
    a = await portal.token("acme", "ops", "read")
    b = await portal.token("globex", "night", "read")
    app = dashboard_of(portal)
    recorder: TokenUses = app.state.token_uses

    async with client(app, headers={"authorization": f"Bearer {a.token}"}) as as_a:
        for _ in range(3):
            assert (await as_a.get("/reseller/v1/sims")).status_code == 200
        assert (await as_a.get("/reseller/v1/endpoints")).status_code == 200
    async with client(app, headers={"authorization": f"Bearer {b.token}"}) as as_b:
        assert (await as_b.get("/reseller/v1/sms", params={"number": "+1555"})).status_code == 200
    refused = client(app, headers={"authorization": "Bearer sfr_" + "x" * 43})
    async with refused:
        assert (await refused.get("/reseller/v1/sims")).status_code == 401  # no token, no use
    assert await recorder.flush() == 2  # one event per token, however many requests

    audited = await uses(world.pool, 3)
    assert audited == [
        ("reseller:acme/ops", "reseller", "GET /reseller/v1/endpoints", 1, ["acme"]),
        ("reseller:acme/ops", "reseller", "GET /reseller/v1/sims", 3, ["acme"]),
        ("reseller:globex/night", "reseller", "GET /reseller/v1/sms", 1, ["globex"]),
    ]

    # the operator's audit page, filtered by actor
    async with client(app, auth=(USER, PASSWORD)) as operator:
        page = await operator.get("/audit", params={"actor": "reseller:acme/ops"})
        assert page.status_code == 200
        assert "GET /reseller/v1/sims" in page.text
        assert "reseller:globex/night" not in page.text.split("<tbody>", 1)[1]
        listed = (await operator.get("/api/audit", params={"action": "use-token"})).json()
        assert {r["actor"] for r in listed["rows"]} == {
            "reseller:acme/ops",
            "reseller:globex/night",
        }

    # rebuilt from the topics: the same rows, and swapped in they are still all there
    def rebuilt(swap: bool) -> Awaitable[list[str]]:
        return rebuild(
            OperatorAuditProjection(), dsn=database_url, live_pool=world.pool, bus=world.bus,
            bootstrap=kafka_bootstrap, kafka=world.settings.kafka, from_archive=False, swap=swap,
            progress=lambda done, total: None,
        )  # fmt: skip

    assert await rebuilt(swap=False) == []
    await rebuilt(swap=True)
    assert await uses(world.pool, 3) == audited

    # each reseller's portal shows its own tokens' uses, never another's
    async with client(app) as browser_a, client(app) as browser_b:
        for browser, token in ((browser_a, a.token), (browser_b, b.token)):
            await sign_in(browser, token)
            assert (await browser.get("/portal/")).status_code == 200  # a portal page is a use
        await recorder.flush()
        await uses(world.pool, 5)
        seen_by_a = (await browser_a.get("/portal/activity")).text
        seen_by_b = (await browser_b.get("/portal/activity")).text
        filtered = (await browser_a.get("/portal/activity", params={"token": "night"})).text
    assert "/reseller/v1/sims" in seen_by_a
    assert "/portal/" in seen_by_a
    assert ">ops<" in seen_by_a
    assert "/reseller/v1/sims" not in seen_by_b
    assert "/reseller/v1/endpoints" not in seen_by_b
    assert "/reseller/v1/sms" in seen_by_b
    assert "/reseller/v1/sms" not in seen_by_a
    assert "night" not in body(seen_by_a)
    assert "/reseller/v1/sms" not in filtered  # naming B's token from A's session finds nothing

    # the token's name, never the token, in the events and the pages
    published = b" ".join(await portal.world.published(RESELLER_USAGE))
    assert b"reseller:acme/ops" in published
    for token in (a.token, b.token):
        for shown in (published.decode(), seen_by_a, seen_by_b, page.text):
            assert token not in shown


def body(html: str) -> str:
    """The page without its header (where the signed-in token's own name is)."""
    return re.split(r"</header>", html, maxsplit=1)[1]
