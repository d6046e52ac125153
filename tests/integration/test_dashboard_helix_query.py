"""The Helix page's carrier lookups over real HTTP: the dashboard (real Postgres), a real
``HelixClient`` talking to the Helix sandbox on loopback, and a real broker for the audit events."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from dashboard.app import create_dashboard_app
from events.helix import HelixApiCalled
from events.topics import HELIX_CALLS
from infra.bus import Bus
from infra.helix.client import HelixClient
from infra.http import serve_http
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.retry import RetryPolicy
from infra.settings import HelixSettings, Settings
from projections.batches import Record
from projections.helix_log import HelixLogProjection
from sandbox.helix import HelixFaults, HelixSandbox, create_helix_sandbox, sandbox_of
from sandbox.helix_world import HelixWorld, make_iccid, make_imei
from tests.integration.test_dashboard import (
    NOW,
    PASSWORD,
    USER,
    dashboard_settings,
    read_events,
)
from tests.support.clock import ControlledClock

pytestmark = pytest.mark.integration

CLIENT_ID = "auth0-client-Dq4Lm8"
USERNAME = "ops@simfleet.example"
GRANT_PASSWORD = "gr4nt-p4ss-Vb7-secret"
FAST = RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.05, budget_s=5.0)
PENDING_ICCID = make_iccid(900)  # in the SIM table, not yet activated
INSERT_SIM = """
INSERT INTO sims (iccid, imei, status, mobility_subscription_id, current_number)
VALUES ($1, $2, $3, $4, $5)
"""


@dataclass(frozen=True)
class Line:
    iccid: str
    subscription_id: str
    number: str  # ten digits, as the carrier writes it


@dataclass
class HelixDash:
    http: httpx.AsyncClient  # authenticated
    anonymous: httpx.AsyncClient
    settings: Settings
    world: HelixWorld
    sandbox: HelixSandbox
    line: Line
    pool: asyncpg.Pool
    bus: Bus
    bootstrap: str

    async def form(self, action: str, fields: dict[str, Any]) -> httpx.Response:
        return await submit(self.http, "/helix", action, fields)

    async def audit(self, count: int, within: float = 15) -> list[HelixApiCalled]:
        topic = self.settings.kafka.topic_prefix + HELIX_CALLS.name
        found = await read_events(self.bootstrap, topic, count, within)
        return [e for e in found if isinstance(e, HelixApiCalled)]

    def carrier_calls(self) -> int:
        return sum(self.world.calls.values())


async def submit(
    client: httpx.AsyncClient, page: str, action: str, fields: dict[str, Any]
) -> httpx.Response:
    """Posts a form the way a browser would: the CSRF token comes from the page."""
    token = re.search(r'name="csrf_token" value="([^"]+)"', (await client.get(page)).text)
    assert token, f"no CSRF token on {page}"
    return await client.post(action, data={"csrf_token": token.group(1), **fields})


def helix_settings(url: str) -> HelixSettings:
    return HelixSettings(
        api_base=url,
        token_url=f"{url}/oauth/token",
        client_id=CLIENT_ID,
        audience="https://hx.example/api",
        grant_username=USERNAME,
        grant_password=SecretStr(GRANT_PASSWORD),
        activation_client_id=230,
        timeout_s=5,
    )


def activate(world: HelixWorld, serial: int) -> Line:
    """A line activated at the carrier; its address carries secrets the answer must mask."""
    iccid = make_iccid(serial)
    sub = world.activate(
        {
            "clientId": 230,
            "plan": {"id": 985},
            "FAN": "FAN-1",
            "address": {"address1": f"1 {GRANT_PASSWORD} St", "city": CLIENT_ID, "state": "NY"},
            "service": {"iccid": iccid, "imei": make_imei(serial)},
        }
    )
    assert sub.pending_number  # shown from the first details call on
    return Line(iccid, str(sub.subscription_id), sub.pending_number)


@pytest.fixture
async def hdash(
    settings: Settings, database_url: str, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[HelixDash]:
    world = HelixWorld(client_id=CLIENT_ID, username=USERNAME, password=GRANT_PASSWORD)
    carrier = create_helix_sandbox(world)
    line = activate(world, 1)
    pool = await create_pool(database_url)
    try:
        await pool.executemany(
            INSERT_SIM,
            [
                (line.iccid, make_imei(1), "active", line.subscription_id, f"+1{line.number}"),
                (PENDING_ICCID, make_imei(900), "pending", None, None),
            ],
        )
        async with serve_http(carrier) as carrier_url:
            configured = dashboard_settings(settings).model_copy(
                update={"helix": helix_settings(carrier_url)}
            )
            broker = build_broker(configured.kafka, kafka_bootstrap)
            async with (
                broker,
                httpx.AsyncClient(base_url=carrier_url, timeout=5) as carrier_http,
            ):
                bus = Bus(broker, configured.kafka.topic_prefix)
                helix = HelixClient(carrier_http, configured.helix, pool, bus.emit, policy=FAST)
                app = create_dashboard_app(configured, pool, bus, ControlledClock(NOW), helix=helix)
                async with (
                    serve_http(app) as url,
                    httpx.AsyncClient(base_url=url, auth=(USER, PASSWORD), timeout=30) as http,
                    httpx.AsyncClient(base_url=url, timeout=30) as anonymous,
                ):
                    yield HelixDash(
                        http,
                        anonymous,
                        configured,
                        world,
                        sandbox_of(carrier),
                        line,
                        pool,
                        bus,
                        kafka_bootstrap,
                    )
    finally:
        await pool.close()


def field(html: str, key: str) -> str:
    found = re.search(rf'data-field="{key}">([^<]*)<', html)
    assert found, f"no {key} on the page"
    return found.group(1)


def secrets_of(hd: HelixDash) -> list[str]:
    configured = [v for v in hd.settings.secret_values().values() if len(v) >= 4]
    return [*configured, *hd.world.tokens]


# --- the lookups -----------------------------------------------------------------------------


async def test_the_form_shows_the_subscribers_number_and_status(hdash: HelixDash) -> None:
    page = (await hdash.http.get("/helix")).text
    assert 'action="/helix/details"' in page
    assert 'action="/helix/reason-codes"' in page

    by_id = await hdash.form("/helix/details", {"subscription_id": hdash.line.subscription_id})
    by_iccid = await hdash.form("/helix/details", {"iccid": hdash.line.iccid})

    for answer in (by_id, by_iccid):
        assert answer.status_code == 200, answer.text
        assert field(answer.text, "phoneNumber") == hdash.line.number
        assert field(answer.text, "status") == "ACTIVE"
        assert f'href="/sims/{hdash.line.iccid}"' in answer.text  # the SIM, found in `sims`
        assert hdash.line.subscription_id in answer.text
        assert "1 *** St" in answer.text  # a secret inside the carrier's answer is masked
    assert hdash.world.calls["details"] == 2


async def test_the_reason_codes_form_lists_the_carriers_table(hdash: HelixDash) -> None:
    answer = await hdash.form("/helix/reason-codes", {})

    assert answer.status_code == 200, answer.text
    rows = re.findall(r'<td class="mono">(\w+)</td><td class="num">(\d+)</td>', answer.text)
    assert sorted(rows) == [("CAN", "1"), ("CR", "22"), ("CR", "35")]
    assert hdash.world.calls["reason_codes"] == 1


async def test_the_json_twins_answer_the_same_and_are_in_openapi(hdash: HelixDash) -> None:
    details = await hdash.http.post("/api/helix/details", json={"iccid": hdash.line.iccid})
    codes = await hdash.http.post(
        "/api/helix/reason-codes", headers={"content-type": "application/json"}
    )

    assert details.status_code == 200, details.text
    body = details.json()
    assert (body["subscription_id"], body["iccid"]) == (
        hdash.line.subscription_id,
        hdash.line.iccid,
    )
    assert (body["details"]["phoneNumber"], body["details"]["status"]) == (
        hdash.line.number,
        "ACTIVE",
    )
    assert (body["details"]["address1"], body["details"]["city"]) == ("1 *** St", "***")
    assert codes.status_code == 200, codes.text
    assert {(r["reasonCode"], r["subscriberState"]) for r in codes.json()["reason_codes"]} == {
        ("CAN", "Cancel"),
        ("CR", "Suspend"),
        ("CR", "Unsuspend"),
    }
    paths = (await hdash.http.get("/api/openapi.json")).json()["paths"]
    assert set(paths["/api/helix/details"]) == {"post"}
    assert set(paths["/api/helix/reason-codes"]) == {"post"}
    assert "/helix/details" not in paths
    # a body a cross-site form could send never reaches the carrier
    before = hdash.carrier_calls()
    forged = await hdash.http.post("/api/helix/details", data={"iccid": hdash.line.iccid})
    assert forged.status_code == 415
    assert hdash.carrier_calls() == before


async def test_no_configured_secret_reaches_a_page_or_the_json(hdash: HelixDash) -> None:
    bodies = [
        (await hdash.form("/helix/details", {"iccid": hdash.line.iccid})).text,
        (await hdash.form("/helix/reason-codes", {})).text,
        (await hdash.http.post("/api/helix/details", json={"iccid": hdash.line.iccid})).text,
        (await hdash.http.post("/api/helix/details", json={"subscription_id": "404"})).text,
        (await hdash.http.get("/helix")).text,
    ]
    secrets = secrets_of(hdash)
    assert {GRANT_PASSWORD, CLIENT_ID} <= set(secrets)
    assert len(hdash.world.tokens) == 1  # the access token is checked too
    for body in bodies:
        assert not [s for s in secrets if s in body], body


async def test_every_lookup_is_audited_on_the_helix_calls_topic(hdash: HelixDash) -> None:
    await hdash.form("/helix/details", {"iccid": hdash.line.iccid})
    await hdash.form("/helix/reason-codes", {})

    events = await hdash.audit(3)

    assert Counter(e.data.operation for e in events) == {
        "token": 1,
        "dashboard_details": 1,
        "reason_codes": 1,
    }
    [details] = [e for e in events if e.data.operation == "dashboard_details"]
    assert (details.subject, details.data.mobility_subscription_id) == (
        hdash.line.iccid,
        hdash.line.subscription_id,
    )
    assert details.data.ok
    assert details.data.response_body[0]["phoneNumber"] == hdash.line.number
    [codes] = [e for e in events if e.data.operation == "reason_codes"]
    assert (codes.data.method, codes.data.status_code) == ("GET", 200)
    secrets = secrets_of(hdash)
    for event in events:
        dumped = event.model_dump_json()
        assert not [s for s in secrets if s in dumped], dumped


async def test_the_originals_helix_query_answers_as_the_carrier_sent_it_and_logs_the_call(
    hdash: HelixDash,
) -> None:
    sub_id = hdash.line.subscription_id
    answer = await hdash.http.post("/api/helix-query", json={"mobilitySubscriptionId": int(sub_id)})
    details = await hdash.http.post("/api/helix/details", json={"subscription_id": sub_id})

    assert answer.status_code == 200, answer.text
    [row] = answer.json()  # the carrier's list, as it sent it
    subscriber = hdash.world.subscriber_by_iccid(hdash.line.iccid)
    assert subscriber is not None
    assert set(row) == set(subscriber.as_details(None))  # no field dropped
    assert row["ratePlan"] == {"soc": "UNL5G", "features": ["HOTSPOT", "WIFI_CALLING"]}
    assert (row["address1"], row["city"]) == ("1 *** St", "***")  # secrets still masked
    assert details.json()["details"]["ratePlan"]["soc"] == "UNL5G"
    assert "post" in (await hdash.http.get("/api/openapi.json")).json()["paths"]["/api/helix-query"]

    run_id = answer.headers["x-simfleet-run-id"]
    events = await hdash.audit(3)
    # the run's calls: the token it needed first, then the lookup
    assert sorted(e.data.operation for e in events if e.data.run_id == run_id) == [
        "dashboard_details",
        "token",
    ]
    [call] = [e for e in events if e.data.run_id == run_id and e.data.operation != "token"]
    records = [Record(call, HELIX_CALLS.name, 0, 0, None, b"")]
    async with hdash.pool.acquire() as conn:
        await HelixLogProjection().apply(conn, records)
    logged = await hdash.pool.fetchrow(
        "SELECT request_headers, response_headers, response_text, run_id FROM helix_api_logs"
        " WHERE call_id = $1",
        call.data.call_id,
    )
    assert logged is not None
    request_headers, response_headers = logged["request_headers"], logged["response_headers"]
    assert request_headers["authorization"] == "***"  # the bearer token, masked
    assert response_headers["content-type"] == "application/json"
    assert (
        json.loads(logged["response_text"].replace("1 *** St", "x"))[0]["ratePlan"]["soc"]
        == "UNL5G"
    )
    assert logged["run_id"] == run_id
    secrets = secrets_of(hdash)
    assert not [s for s in secrets if s in str(dict(logged))]


# --- refusals and errors ---------------------------------------------------------------------


async def test_the_forms_refuse_a_missing_or_forged_csrf_token(hdash: HelixDash) -> None:
    forged = f"{int(ControlledClock(NOW).now().timestamp())}.{'0' * 64}"
    for action, fields in (
        ("/helix/details", {"iccid": hdash.line.iccid}),
        ("/helix/reason-codes", {}),
    ):
        assert (await hdash.http.post(action, data=fields)).status_code == 403
        refused = await hdash.http.post(action, data={**fields, "csrf_token": forged})
        assert refused.status_code == 403
        assert "CSRF" in refused.text
    assert hdash.carrier_calls() == 0
    assert hdash.world.token_requests == 0


async def test_without_credentials_every_lookup_answers_401(hdash: HelixDash) -> None:
    wrong = httpx.BasicAuth(USER, "not-the-password")
    for method, path in (
        ("GET", "/helix"),
        ("POST", "/helix/details"),
        ("POST", "/helix/reason-codes"),
        ("POST", "/api/helix/details"),
        ("POST", "/api/helix/reason-codes"),
    ):
        for auth in (None, wrong):
            response = await hdash.anonymous.request(
                method, path, json={"iccid": hdash.line.iccid}, auth=auth
            )
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"].startswith("Basic")
    assert hdash.carrier_calls() == 0


async def test_an_unknown_subscription_or_sim_gets_a_clear_error_page(hdash: HelixDash) -> None:
    unknown = await hdash.form("/helix/details", {"subscription_id": "99999"})
    assert unknown.status_code == 404
    assert "Helix has no subscription 99999" in unknown.text
    assert 'role="alert"' in unknown.text  # the dashboard's error page
    assert hdash.world.calls["details"] == 1  # the carrier was asked, and said no

    cases = [
        ({"iccid": make_iccid(777)}, 404, f"no SIM with ICCID {make_iccid(777)}"),
        ({"iccid": PENDING_ICCID}, 409, "has no carrier subscription yet"),
        ({}, 400, "Give either a subscription id or an ICCID"),
        ({"iccid": hdash.line.iccid, "subscription_id": "1"}, 400, "Give either"),
    ]
    for fields, status, message in cases:
        page = await hdash.form("/helix/details", fields)
        assert (page.status_code, message in page.text) == (status, True), page.text
        api = await hdash.http.post("/api/helix/details", json=fields)
        assert (api.status_code, message in api.json()["detail"]) == (status, True)
    assert hdash.world.calls["details"] == 1  # none of those reached the carrier


async def test_a_carrier_outage_or_refusal_is_an_error_page_not_a_500(hdash: HelixDash) -> None:
    hdash.sandbox.switch("flaky_5xx", HelixFaults(fraction=1.0, operations=frozenset({"details"})))
    outage = await hdash.form("/helix/details", {"iccid": hdash.line.iccid})
    assert outage.status_code == 503
    assert "Helix did not answer" in outage.text

    hdash.sandbox.switch("happy")
    hdash.world.password = "rotated-at-the-carrier"
    hdash.world.expire_tokens()  # our cached token is refused, and so is our grant
    refused = await hdash.http.post("/api/helix/details", json={"iccid": hdash.line.iccid})
    assert refused.status_code == 502  # never 401: that would ask the browser for credentials
    assert "Helix refused the lookup" in refused.json()["detail"]
    assert not [s for s in secrets_of(hdash) if s in refused.text]


async def test_without_a_carrier_client_the_form_says_lookups_are_off(hdash: HelixDash) -> None:
    app = create_dashboard_app(hdash.settings, hdash.pool, hdash.bus, ControlledClock(NOW))
    async with (
        serve_http(app) as url,
        httpx.AsyncClient(base_url=url, auth=(USER, PASSWORD)) as client,
    ):
        page = (await client.get("/helix")).text
        form = await submit(client, "/controls", "/helix/details", {"iccid": hdash.line.iccid})
        api = await client.post("/api/helix/reason-codes", json={})

    assert "not available in this process" in page
    assert 'action="/helix/details"' not in page
    assert form.status_code == 503
    assert "not available in this process" in form.text
    assert api.status_code == 503
    assert hdash.carrier_calls() == 0
