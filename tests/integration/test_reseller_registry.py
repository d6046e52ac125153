"""Registry commands → reseller.registry / sim.lifecycle → the reseller read tables; the JSON API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from dashboard import api_resellers
from events.topics import RESELLER_REGISTRY
from infra.clock import SystemClock
from infra.settings import Settings, WebhookSettings
from producers.reseller_commands import CommandRejected, NotFound, ResellerCommands
from tests.support.eventually import eventually
from tests.support.webhook_world import World, webhook_world

pytestmark = pytest.mark.integration

ICCIDS = ["8901260000000000001", "8901260000000000002"]


@pytest.fixture
async def world(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[World]:
    async with webhook_world(settings, kafka_bootstrap) as world:
        yield world


async def test_commands_build_the_tables_and_secrets_stay_sealed(world: World) -> None:
    issued = await world.reseller("acme", {"main": "ok", "old": "ok"})
    rotated = await world.commands.rotate_secret("acme", "main", "ops@example.com")
    await world.commands.remove_endpoint("acme", "old", "ops@example.com", "moved to main")
    done = await world.commands.assign_sims("acme", [*ICCIDS, "12345"], "ops@example.com")

    assert done.assigned == ICCIDS
    assert done.errors == ["'12345': not an ICCID (19-20 digits)"]
    endpoints = await eventually(
        lambda: world.pool.fetch("SELECT * FROM reseller_webhooks"),
        until=lambda rows: len(rows) == 1 and rows[0]["previous_sealed_secret"] is not None,
    )
    sims = await eventually(
        lambda: world.pool.fetch("SELECT iccid, reseller_id FROM reseller_sims ORDER BY iccid"),
        until=lambda rows: len(rows) == 2,
    )
    assert [(r["iccid"], r["reseller_id"]) for r in sims] == [(i, "acme") for i in ICCIDS]
    [main] = endpoints
    assert (main["endpoint_id"], main["enabled"], main["url"]) == ("main", True, world.url("main"))
    assert world.box.unseal(main["sealed_secret"]) == rotated.secret
    assert world.box.unseal(main["previous_sealed_secret"]) == issued["main"].secret
    assert main["previous_valid_until"] == rotated.previous_valid_until
    clear = [rotated.secret, *(i.secret for i in issued.values())]
    assert all(s.startswith("whsec_") for s in clear)
    stored = await world.pool.fetchval("SELECT string_agg(w::text, ' ') FROM reseller_webhooks w")
    published = b" ".join(await world.published(RESELLER_REGISTRY)).decode()
    assert "webhook.secret_rotated" in published
    for secret in clear:
        for where in (stored, published, repr(rotated), repr(issued)):
            assert secret not in where
            assert secret.removeprefix("whsec_") not in where


async def test_unsafe_endpoint_urls_are_refused_when_added(world: World) -> None:
    await world.reseller("acme", {})
    strict = ResellerCommands(
        bus=world.bus,
        pool=world.pool,
        box=world.box,
        settings=WebhookSettings(),
        clock=SystemClock(),
    )
    refused = [
        "http://hooks.example.com/plain-http",
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:10.0.0.1]/hook",
        "https://10.1.2.3/hook",
        "https://user:pw@hooks.example.com/hook",
        "ftp://hooks.example.com/hook",
    ]
    for url in refused:
        with pytest.raises(CommandRejected):
            await strict.add_endpoint("acme", url, "test")

    ok = await strict.add_endpoint("acme", "https://hooks.example.com/simfleet", "test")
    with pytest.raises(NotFound):
        await strict.add_endpoint("nobody", "https://hooks.example.com/x", "test")
    with pytest.raises(CommandRejected, match="unknown event types"):
        await strict.add_endpoint("acme", "https://hooks.example.com/x", "t", event_types=["x"])
    rows = await eventually(lambda: world.pool.fetch("SELECT endpoint_id FROM reseller_webhooks"))
    assert [r["endpoint_id"] for r in rows] == [ok.endpoint_id]


async def test_the_json_api(world: World) -> None:
    app = FastAPI()
    app.state.reseller_commands = world.commands
    app.include_router(api_resellers.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
        created = await client.post("/api/resellers", json={"reseller_id": "acme", "name": "Acme"})
        assert created.status_code == 202
        listed = await eventually(lambda: client.get("/api/resellers"), until=lambda r: r.json())
        assert [(r["id"], r["name"]) for r in listed.json()] == [("acme", "Acme")]

        added = await client.post(
            "/api/resellers/acme/endpoints",
            json={"url": world.url("api"), "event_types": ["sms.received"], "endpoint_id": "api"},
        )
        assert added.status_code == 201
        assert added.headers["cache-control"] == "no-store"
        secret = added.json()["secret"]
        assert secret.startswith("whsec_")
        shown = await eventually(
            lambda: client.get("/api/resellers/acme/endpoints"), until=lambda r: r.json()
        )
        assert shown.json()[0]["event_types"] == ["sms.received"]
        assert "secret" not in shown.text.replace("previous_valid_until", "")
        rotated = await client.post("/api/resellers/acme/endpoints/api/rotate-secret")
        assert rotated.status_code == 200
        assert rotated.json()["secret"] not in (secret, None)
        assigned = await client.post("/api/resellers/acme/sims", json={"iccids": [*ICCIDS, "x"]})
        assert assigned.json() == {"assigned": 2, "errors": ["'x': not an ICCID (19-20 digits)"]}
        assert (await client.get("/api/resellers/acme/deliveries?status=failed")).json() == []
        resend = await client.post(
            "/api/resellers/acme/deliveries/resend", json={"only_failed": True}
        )
        assert resend.status_code == 202

        unknown = await client.post("/api/resellers/nobody/endpoints", json={"url": world.url("x")})
        unsafe = await client.post("/api/resellers/acme/endpoints", json={"url": "ftp://x.io/h"})
        no_reason = await client.delete("/api/resellers/acme/endpoints/api")
        removed = await client.delete(
            "/api/resellers/acme/endpoints/api", params={"reason": "replaced by main"}
        )
        again = await client.post("/api/resellers", json={"reseller_id": "acme", "name": "Acme"})
    assert (unknown.status_code, unsafe.status_code, removed.status_code) == (404, 422, 202)
    assert again.status_code == 422
    assert (no_reason.status_code, no_reason.json()["detail"]) == (
        422,
        "removing an endpoint needs a reason",
    )
    paths = app.openapi()["paths"]
    assert {"/api/resellers", "/api/resellers/{reseller_id}/deliveries/resend"} <= set(paths)
