"""Tenant isolation of the reseller API, proven by walking it: with reseller A's token, every
route that names a resource answers 404 for each of reseller B's resources (SIM, number, SMS,
delivery, endpoint) and for guessed ids alike, while the same routes answer A's own; lists and
filters never show B's rows; no secret of B (signing secret, token) reaches A; the operator's
routes refuse a reseller token; nothing of either token reaches a log line."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import structlog
from fastapi import FastAPI
from starlette.routing import Mount

from dashboard.app import create_dashboard_app
from dashboard.reseller_api.app import PREFIX
from infra.clock import SystemClock
from infra.logging import configure
from infra.settings import Settings
from tests.integration.test_dashboard import PAGES, PASSWORD, USER, dashboard_settings
from tests.integration.test_reseller_api import numbered_sim
from tests.support.eventually import eventually
from tests.support.portal_world import PortalWorld, portal_world
from tests.support.webhook_world import sms

pytestmark = pytest.mark.integration

PARAM = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class Holdings:
    """One reseller's resources, by path parameter name."""

    iccid: str
    number: str
    message_id: str
    delivery_id: str
    endpoint_id: str
    secret: str
    token: str


GUESSED = {
    "iccid": "8901260000000099998",
    "number": "+15550999999",
    "message_id": "sms.received_0000",
    "delivery_id": "987654321",
    "endpoint_id": "ep_guessed",
}
# no resource of anyone's in the path or body: nothing to isolate, checked as lists instead
NO_RESOURCE = {("GET", "/sims"), ("GET", "/sms"), ("GET", "/deliveries"), ("GET", "/endpoints")}
NO_RESOURCE |= {("POST", "/endpoints"), ("POST", "/recover")}
BODIES = {"/endpoints/{endpoint_id}/resume": {"redeliver": True}}


async def holdings(portal: PortalWorld, reseller_id: str, iccid: str, number: str) -> Holdings:
    world = portal.world
    issued = await world.reseller(reseller_id, {f"{reseller_id}-hook": "ok"})
    await numbered_sim(world, iccid, number, reseller_id)
    token = await portal.token(reseller_id, "walker")
    text = sms(number, f"for {reseller_id}")
    await world.publish([text])
    endpoint_id = f"{reseller_id}-hook"
    await world.receiver.wait_for(1, timeout=30, endpoint_id=endpoint_id)
    delivery_id = await eventually(lambda: world.pool.fetchval(
        "SELECT id FROM webhook_deliveries WHERE reseller_id = $1", reseller_id), within=30)  # fmt: skip
    await eventually(lambda: world.pool.fetchval(
        "SELECT count(*) FROM inbound_sms WHERE message_id = $1", text.id), within=30)  # fmt: skip
    return Holdings(
        iccid, number, text.id, str(delivery_id), endpoint_id, issued[endpoint_id].secret,
        token.token,
    )  # fmt: skip


def reseller_routes(site: FastAPI) -> list[tuple[str, str]]:
    """Every operation the reseller API documents (its OpenAPI document is its contract)."""
    [mount] = [r for r in site.routes if isinstance(r, Mount) and r.path == PREFIX]
    assert isinstance(mount.app, FastAPI)
    return operations(mount.app)


def operations(app: FastAPI) -> list[tuple[str, str]]:
    paths = app.openapi()["paths"]
    return sorted((method.upper(), path) for path, ops in paths.items() for method in ops)


def fill(path: str, values: dict[str, str]) -> str:
    return PARAM.sub(lambda m: values[m.group(1)], path)


@pytest.fixture
async def portal(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[PortalWorld]:
    async with portal_world(settings, kafka_bootstrap) as portal:
        yield portal


async def test_reseller_a_reaches_none_of_reseller_bs_resources(portal: PortalWorld) -> None:
    world = portal.world
    async with world.consumer():
        a = await holdings(portal, "acme", "8901260000000000001", "+15559870001")
        b = await holdings(portal, "globex", "8901260000000000002", "+15559870002")
    routes = reseller_routes(portal.api)
    resource_routes = [(m, p) for m, p in routes if (m, p) not in NO_RESOURCE]
    assert {p for _, p in resource_routes} >= {
        "/sims/{iccid}", "/numbers/{number}", "/sms/{message_id}",
        "/deliveries/{delivery_id}", "/endpoints/{endpoint_id}",
    }  # fmt: skip
    assert all(PARAM.search(p) for _, p in resource_routes), "a new route the walk cannot place"
    b_values, a_values = vars(b), vars(a)

    configure("json", "INFO")  # as a process starts (a CLI test may have left WARNING)
    async with portal.client(a.token) as as_a, portal.client(b.token) as as_b:
        with structlog.testing.capture_logs() as logs:
            answers: list[httpx.Response] = []
            for method, path in resource_routes:
                for values in (b_values, GUESSED):
                    body = BODIES.get(path) if method == "POST" else None
                    answer = await as_a.request(method, fill(path, values), json=body)
                    assert answer.status_code == 404, (method, path, values, answer.text)
                    answers.append(answer)
            for method, path in resource_routes:
                if method == "GET":  # the control: the same routes answer A's own
                    assert (await as_a.get(fill(path, a_values))).status_code == 200, path
            recover = {"since": (datetime.now(UTC) - timedelta(days=1)).isoformat()}
            foreign = await as_a.post("/recover", json={**recover, "endpoint_id": b.endpoint_id})
            assert foreign.status_code == 404
            lists = [
                await as_a.get(path) for path in ("/sims", "/sms", "/deliveries", "/endpoints")
            ] + [
                await as_a.get("/sims", params={"number": b.number}),
                await as_a.get("/sms", params={"number": b.number}),
                await as_a.get("/deliveries", params={"endpoint_id": b.endpoint_id}),
            ]
            answers += [foreign, *lists]
            # B's own view still holds everything: A's walk changed nothing of B's
            assert (await as_b.get(f"/endpoints/{b.endpoint_id}")).json()["enabled"] is True
            assert len((await as_b.get("/deliveries")).json()["rows"]) == 1

    # a 404 may echo the id A itself asked for; nothing B holds may appear anywhere else
    listed = " ".join(answer.text for answer in lists)
    for value in (b.iccid, b.number, b.message_id, b.endpoint_id, "for globex"):
        assert value not in listed, value
    seen_by_a = " ".join(answer.text for answer in answers)
    for secret in (b.secret, b.secret.removeprefix("whsec_"), b.token, "for globex"):
        assert secret not in seen_by_a
    assert a.iccid in lists[0].text  # the lists do show A's own
    logged = repr(logs)
    for secret in (a.token, b.token, a.secret, b.secret):
        assert secret not in logged
    assert "reseller:acme/walker" in logged


async def test_operator_routes_refuse_a_reseller_token(
    portal: PortalWorld, settings: Settings
) -> None:
    await portal.world.reseller("acme", {})
    token = (await portal.token("acme", "curious")).token
    app = create_dashboard_app(
        dashboard_settings(portal.world.settings), portal.world.pool, portal.world.bus,
        SystemClock(),
    )  # fmt: skip
    operator_routes = [*operations(app), *(("GET", page) for page in PAGES)]
    assert len(operator_routes) > 20
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://d", headers=headers) as http:
        for method, path in operator_routes:
            filled = PARAM.sub(lambda m: "activate" if m.group(1) == "action" else "acme", path)
            answer = await http.request(method, filled)
            assert answer.status_code == 401, (method, path, answer.status_code)
        # and the reseller API, mounted in the same app, does take it
        assert (await http.get(f"{PREFIX}/sims")).status_code == 200
    # the operator issues tokens through the JSON API: answered once, listed without it
    operator = httpx.AsyncClient(transport=transport, base_url="http://d", auth=(USER, PASSWORD))
    async with operator:
        issued = await operator.post(
            "/api/resellers/acme/tokens", json={"name": "api-made", "scope": "read-write"}
        )
        assert issued.status_code == 201, issued.text
        assert issued.headers["cache-control"] == "no-store"
        made = issued.json()
        assert made["token"].startswith("sfr_")
        listed = await eventually(
            lambda: operator.get("/api/resellers/acme/tokens"),
            until=lambda r: "api-made" in r.text,
        )
        assert made["token"] not in listed.text
        assert "token_hash" not in listed.text
        assert (await operator.get("/api/resellers/nobody/tokens")).status_code == 404
