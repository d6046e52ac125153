"""The operator dashboard over real HTTP, a real Postgres seeded as the projections would leave
it (tests/support/dashboard_world.py) and a real broker for the commands it publishes."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from pydantic import SecretStr
from starlette.routing import Mount

from dashboard.app import create_dashboard_app
from dashboard.portal.app import PREFIX as PORTAL
from dashboard.reseller_api.app import PREFIX as RESELLER_API
from events.codec import decode
from events.envelope import Event
from events.reseller import WebhookEndpointEnabled, WebhookResendRequested
from events.sim import (
    MdnChangeRequested,
    SimActivationRequested,
    SimCancelRequested,
    SyncRequested,
    VerificationRequested,
)
from events.topics import GATEWAY_REJECTED, RESELLER_REGISTRY, SIM_LIFECYCLE
from infra.bus import Bus
from infra.http import serve_http
from infra.kafka import build_broker
from infra.kafka_lag import LagMeter
from infra.postgres import create_pool
from infra.settings import HelixSettings, SecretsSettings, Settings
from tests.support import dashboard_world as w
from tests.support.clock import ControlledClock
from tests.support.lagging import group_left_behind

pytestmark = pytest.mark.integration

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
USER, PASSWORD = "operator", "dash-Pa55-w0rd-91f"
RUN_SECRETS = {
    "activate": "bulk-run-secret-1a2b",
    "finalize": "finalizer-run-secret-3c4d",
    "rotate": "admin-run-secret-5e6f",
    "sync": "sync-secret-7a8b",
    "cancel": "cancel-secret-9c0d",
}
PAGES: tuple[str, ...] = ("/", "/sims", f"/sims/{w.FEATURED}", "/sms", "/deliveries", "/helix")
PAGES += ("/resellers", "/controls", "/audit", "/carrier")
API_READS: tuple[str, ...] = ("/api/overview", "/api/sims", f"/api/sims/{w.FEATURED}", "/api/sms")
API_READS += ("/api/deliveries", "/api/helix", "/api/resellers", "/api/audit", "/api/carrier")
API_READS += ("/api/openapi.json",)


def dashboard_settings(settings: Settings, *, auth: str = f"{USER}:{PASSWORD}") -> Settings:
    return settings.model_copy(
        update={
            "secrets": SecretsSettings(
                dashboard_auth=SecretStr(auth),
                bulk_run_secret=SecretStr(RUN_SECRETS["activate"]),
                finalizer_run_secret=SecretStr(RUN_SECRETS["finalize"]),
                admin_run_secret=SecretStr(RUN_SECRETS["rotate"]),
                sync_secret=SecretStr(RUN_SECRETS["sync"]),
                cancel_secret=SecretStr(RUN_SECRETS["cancel"]),
                gateway_secret=SecretStr("gateway-secret-e1f2"),
            ),
            "helix": HelixSettings(grant_password=SecretStr(w.HELIX_PASSWORD)),
        }
    )


@dataclass
class Dash:
    app: FastAPI
    url: str
    http: httpx.AsyncClient  # authenticated
    anonymous: httpx.AsyncClient
    settings: Settings
    pool: asyncpg.Pool
    bootstrap: str

    async def form(self, page: str, action: str, fields: dict[str, Any]) -> httpx.Response:
        """Submits a form the way a browser would: the CSRF token comes from the page."""
        html = (await self.http.get(page)).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert token, f"no CSRF token on {page}"
        return await self.http.post(action, data={"csrf_token": token.group(1), **fields})

    async def events(self, topic: str, count: int, within: float = 15) -> list[Event]:
        full_name = self.settings.kafka.topic_prefix + topic
        return await read_events(self.bootstrap, full_name, count, within)


@pytest.fixture
async def dash(
    settings: Settings, database_url: str, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[Dash]:
    configured = dashboard_settings(settings)
    pool = await create_pool(database_url)
    async with pool.acquire() as conn:
        await w.seed(conn, NOW)
    broker = build_broker(configured.kafka, kafka_bootstrap)
    try:
        async with broker:
            bus = Bus(broker, configured.kafka.topic_prefix)
            lag = LagMeter(kafka_bootstrap, configured.kafka, ttl_s=0).lags
            app = create_dashboard_app(configured, pool, bus, ControlledClock(NOW), lag=lag)
            async with (
                serve_http(app) as url,
                httpx.AsyncClient(base_url=url, auth=(USER, PASSWORD), timeout=30) as http,
                httpx.AsyncClient(base_url=url, timeout=30) as anonymous,
            ):
                yield Dash(app, url, http, anonymous, configured, pool, kafka_bootstrap)
    finally:
        await pool.close()


async def read_events(bootstrap: str, topic: str, count: int, within: float = 15) -> list[Event]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        found: list[Event] = []
        deadline = time.monotonic() + within
        while len(found) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            found += [decode(r.value) for records in batch.values() for r in records]
        return found
    finally:
        await consumer.stop()


def concrete_paths(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) for every route the app serves, parameters filled in."""
    values = {"iccid": w.FEATURED, "action": "rotate", "reseller_id": "acme"}
    values["endpoint_id"], values["token_id"] = w.ENDPOINT, "tok_0123456789ab"
    found = []
    for route in iter_route_contexts(app.routes):
        assert route.path is not None
        if route.path in (RESELLER_API, PORTAL):
            continue  # the resellers' own, behind their tokens: tests/integration/test_reseller_*
        if isinstance(route.original_route, Mount):
            found.append(("GET", route.path + "/dashboard.css"))
            continue
        path = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], route.path)
        found += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


# --- security ------------------------------------------------------------------------------


async def test_every_route_refuses_missing_and_wrong_credentials(dash: Dash) -> None:
    routes = concrete_paths(dash.app)
    assert len(routes) > 25  # pages, forms, API, run, static, openapi
    assert {("GET", "/audit"), ("GET", "/api/audit")} <= set(routes)
    wrong = {"authorization": "Basic " + base64.b64encode(f"{USER}:nope".encode()).decode()}
    for method, path in [*routes, ("GET", "/no-such-page")]:
        for headers in ({}, wrong):
            response = await dash.anonymous.request(method, path, headers=headers)
            if path == "/healthz":
                assert response.status_code == 200
            elif path.startswith("/api/run/"):
                assert response.status_code == 401, (method, path)
                assert response.headers["www-authenticate"] == "Bearer"
            else:
                assert response.status_code == 401, (method, path, response.text)
                assert response.headers["www-authenticate"].startswith("Basic")
    assert (await dash.http.get("/")).status_code == 200


async def test_the_overview_shows_each_groups_lag_from_the_broker(dash: Dash) -> None:
    prefix = dash.settings.kafka.topic_prefix
    topic, group = GATEWAY_REJECTED.full_name(prefix), f"{prefix}overview-probe"
    await group_left_behind(dash.bootstrap, topic, group, records=3, committed=1)
    page = (await dash.http.get("/")).text
    lag_table = page[page.index('id="consumer-lag"') :]
    assert re.search(rf'<td class="mono">{re.escape(group)}</td><td class="num">2</td>', lag_table)


async def test_without_dashboard_auth_every_route_answers_503(dash: Dash) -> None:
    settings = dashboard_settings(dash.settings, auth="")
    app = create_dashboard_app(
        settings, dash.pool, Bus(build_broker(settings.kafka, "x")), ControlledClock(NOW)
    )
    async with serve_http(app) as url, httpx.AsyncClient(base_url=url) as client:
        for method, path in concrete_paths(app):
            if path == "/healthz" or path.startswith("/api/run/"):
                continue
            response = await client.request(method, path, auth=(USER, PASSWORD))
            assert response.status_code == 503, (method, path)
            assert "DASHBOARD_AUTH" in response.text


async def test_forms_refuse_a_missing_or_forged_csrf_token(dash: Dash) -> None:
    fields = {"action": "rotate", "iccid": w.FEATURED}
    assert (await dash.http.post("/sims/actions", data=fields)).status_code == 403
    forged = {**fields, "csrf_token": f"{int(NOW.timestamp())}.{'0' * 64}"}
    assert (await dash.http.post("/sims/actions", data=forged)).status_code == 403
    assert (
        await dash.http.post("/deliveries/resend", data={"reseller_id": "acme"})
    ).status_code == 403
    upload = {"file": ("s.csv", b"iccid,imei\n", "text/csv")}
    assert (await dash.http.post("/import", files=upload)).status_code == 403
    assert (await dash.form("/sims", "/sims/actions", fields)).status_code == 200


async def test_api_writes_refuse_what_a_cross_site_form_could_send(dash: Dash) -> None:
    for kind, body in (
        ("application/x-www-form-urlencoded", "iccids=x"),
        ("text/plain", '{"iccids": ["x"]}'),
        ("multipart/form-data; boundary=b", "--b--"),
    ):
        response = await dash.http.post(
            "/api/sims/rotate", content=body, headers={"content-type": kind}
        )
        assert response.status_code == 415, kind
    assert (await dash.http.post("/api/sims/rotate", json={"iccids": [w.FEATURED]})).is_success


async def test_security_headers_are_on_pages_api_static_and_refusals(dash: Dash) -> None:
    responses = [await dash.http.get(p) for p in ("/", "/api/overview", "/static/dashboard.js")]
    responses += [await dash.anonymous.get("/"), await dash.http.get("/sims/0000")]
    for response in responses:
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    html = responses[0].text
    assert "<script>" not in html
    assert "onclick" not in html
    assert "style=" not in html


async def test_no_configured_secret_is_ever_rendered(dash: Dash) -> None:
    bodies = [(await dash.http.get(p)).text for p in PAGES + API_READS]
    bodies += [(await dash.http.get(f"/helix?iccid={w.FEATURED}")).text]
    secrets = [v for v in dash.settings.secret_values().values() if len(v) >= 4]
    secrets += [PASSWORD, w.SEALED_SECRET, w.URL_TOKEN, w.HELIX_PASSWORD]
    assert len(secrets) >= 10
    for body in bodies:
        for secret in secrets:
            assert secret not in body
    assert "hooks.acme.example/simfleet?token=***" in bodies[PAGES.index("/resellers")]


# --- pages and reads -----------------------------------------------------------------------


async def test_the_overview_counts_the_seeded_fleet(dash: Dash) -> None:
    stats = (await dash.http.get("/api/overview")).json()

    assert stats["total_sims"] == 6 + w.FILLER_COUNT
    by_status = {row["status"]: row["sims"] for row in stats["by_status"]}
    assert by_status == {
        "pending": 1,
        "provisioning": 1,
        "active": 2 + w.FILLER_COUNT,
        "suspended": 1,
        "cancelled": 1,
        "error": 0,
    }
    assert (stats["online"], stats["verification_failed"]) == (1 + w.FILLER_COUNT, 1)
    assert stats["silent"] == 1  # active SIMs only
    assert stats["sms_24h"] == 4  # the SMS two days old is not counted
    assert (stats["delivered_24h"], stats["failed_24h"], stats["waiting_24h"]) == (1, 1, 1)
    assert stats["webhook_success_rate"] == 0.5
    [position] = stats["projections"]
    assert (position["projection"], position["partitions"], position["applied"]) == (
        "inbound_sms",
        2,
        52,
    )
    page = (await dash.http.get("/")).text
    assert f'data-stat="total_sims">{6 + w.FILLER_COUNT}<' in page
    assert 'data-stat="silent">1<' in page
    assert 'href="/sims?silent=true"' in page
    assert "50.0%" in page
    assert 'src="/static/dashboard.js"' in page


async def test_the_sim_table_searches_filters_and_paginates(dash: Dash) -> None:
    async def iccids(**params: str) -> list[str]:
        page = (await dash.http.get("/api/sims", params=params)).json()
        return [row["iccid"] for row in page["rows"]]

    assert await iccids(q=w.FEATURED[:18]) == [w.FEATURED]
    assert await iccids(q="+1 (555) 010-0001") == [w.FEATURED]
    assert await iccids(q="5550100001") == [w.FEATURED]
    assert await iccids(q="letters") == []
    assert await iccids(status="pending") == [w.PENDING]
    assert await iccids(status="cancelled") == await iccids(status="canceled") == [w.CANCELLED]
    assert await iccids(silent="true") == [w.FEATURED]
    assert set(await iccids(reseller="globex", q="89012600")) == {w.PROVISIONING, w.SUSPENDED}
    assert (await dash.http.get("/api/sims", params={"status": "sleeping"})).status_code == 400

    seen, after, pages = [], "", 0
    while True:
        page = (await dash.http.get("/api/sims", params={"after": after, "limit": 40})).json()
        seen += [row["iccid"] for row in page["rows"]]
        pages += 1
        if not page["next_after"]:
            break
        after = page["next_after"]
    assert seen == sorted(w.ALL_ICCIDS)
    assert pages == 4
    back = {"before": page["prev_before"], "limit": 40}  # from the last page, one back
    previous = (await dash.http.get("/api/sims", params=back)).json()
    assert [r["iccid"] for r in previous["rows"]] == seen[80:120]
    assert (previous["prev_before"], previous["next_after"]) == (seen[80], seen[119])

    html = (await dash.http.get("/sims", params={"q": w.FEATURED})).text
    row = html[html.index(f'name="iccid" value="{w.FEATURED}"') :].split("</tr>")[0]
    for cell in (w.NUMBER, "SUB-0001", "acme", ">4<", ">silent<"):  # 4 SMS reached it
        assert cell in row
    first = (await dash.http.get("/sims")).text
    assert "1 SIM match" not in first
    assert f"{6 + w.FILLER_COUNT} SIMs match" in first
    assert 'rel="next"' in first
    assert 'rel="prev"' not in first
    silent = (await dash.http.get("/sims", params={"silent": "true"})).text
    assert "1 SIM match" in silent
    assert 'name="silent" value="true" checked' in silent


async def test_the_sim_page_shows_timeline_numbers_and_sms(dash: Dash) -> None:
    html = (await dash.http.get(f"/sims/{w.FEATURED}")).text

    timeline = html[html.index('id="timeline"') : html.index("Number history")]
    for kind in ("sim.activation_requested", "sim.activated", "number.assigned"):
        assert kind in timeline
    assert "verification.sent" in timeline
    assert "number.online" in timeline
    assert "webhook.delivery_succeeded" in timeline  # correlated, keyed by endpoint
    assert w.ENDPOINT in timeline
    assert "sync.requested" not in timeline  # another SIM's event with the same correlation
    assert f'<a href="/audit?actor=cli%3Aimporter">{w.IMPORTER}</a>' in timeline  # who asked
    for number in (w.NUMBER, w.OLD_NUMBER):
        assert number in html
    for body in ("VERIFY ABC123", "your code is 4411", "G-666266", "tagged by the gateway"):
        assert body in html
    assert "to a number nobody holds now" not in html
    detail = (await dash.http.get(f"/api/sims/{w.FEATURED}")).json()
    assert len(detail["sms"]) == 4
    assert len(detail["numbers"]) == 2
    assert len(detail["timeline"]) == 6
    assert [e["actor"] for e in detail["timeline"] if e["actor"]] == [w.IMPORTER]
    assert (await dash.http.get("/sims/8901260000000000999")).status_code == 404


async def test_the_logs_show_sms_deliveries_helix_calls_and_resellers(dash: Dash) -> None:
    sms = (await dash.http.get("/sms", params={"q": "G-666266"})).text
    assert f"/sims/{w.FEATURED}" in sms
    assert "Google" in sms
    unknown = (await dash.http.get("/api/sms", params={"unknown_only": "true"})).json()
    assert [m["message_id"] for m in unknown["rows"]] == ["m-stray"]
    failed = (await dash.http.get("/deliveries", params={"status": "failed"})).text
    assert "HTTP 500 from endpoint" in failed
    assert "msg-delivered" not in failed
    helix = (await dash.http.get("/helix", params={"ok": "false"})).text
    assert "subscriber_details" in helix
    assert "HTTP 503 Service Unavailable" in helix
    assert "&#34;password&#34;: &#34;***&#34;" in helix
    resellers = (await dash.http.get("/api/resellers")).json()  # dashboard/api_resellers.py
    assert [(r["id"], r["sims"], r["endpoints"]) for r in resellers] == [
        ("acme", 68, 1),
        ("globex", 67, 0),
    ]
    assert "sealed_secret" not in str(resellers)


async def test_values_the_queries_cannot_use_are_a_400_with_the_reason(dash: Dash) -> None:
    """Found by test_dashboard_fuzz.py: each of these was a 500."""
    big = str(2**63)
    for path in ("/api/helix?older=W", "/helix?older=0000-00", f"/api/sms?older={big}"):
        response = await dash.http.get(path)
        assert response.status_code == 400, (path, response.text)
    for path in ("/api/sims?after=a%00", "/sims?after=%00", "/api/sims/%00"):
        response = await dash.http.get(path)
        assert response.status_code == 400, (path, response.text)
    null = await dash.http.post("/api/sims/suspend", json={"iccids": ["89\u0000"]})
    assert (null.status_code, "0x00" in null.text) == (400, True)
    huge = await dash.http.post("/api/deliveries/resend", json={"delivery_ids": [2**63]})
    assert (huge.status_code, "int64" in huge.text) == (400, True)
    assert "not a Helix log cursor" in (await dash.http.get("/api/helix?older=W")).text
    older = (await dash.http.get("/api/helix", params={"limit": 1})).json()["older"]
    assert (await dash.http.get("/api/helix", params={"older": older})).status_code == 200


# --- controls --------------------------------------------------------------------------------


async def test_a_selection_publishes_one_request_per_eligible_sim(dash: Dash) -> None:
    response = await dash.form(
        "/sims", "/sims/actions", {"action": "rotate", "iccid": [w.FEATURED, w.PENDING]}
    )

    assert response.status_code == 200
    assert f'href="/sims/{w.FEATURED}#timeline"' in response.text
    assert "status is pending, rotate needs active" in response.text
    [event] = await dash.events(SIM_LIFECYCLE.name, 1)
    assert isinstance(event, MdnChangeRequested)
    assert (event.subject, event.data.requested_by) == (w.FEATURED, f"dashboard:{USER}")
    assert event.id in response.text


async def test_cancel_asks_for_confirmation_and_a_reason(dash: Dash) -> None:
    first = await dash.form(
        f"/sims/{w.FEATURED}", "/sims/actions", {"action": "cancel", "iccid": w.FEATURED}
    )
    assert first.status_code == 200
    assert "Yes, cancel" in first.text
    no_reason = await dash.form(
        "/sims", "/sims/actions", {"action": "cancel", "iccid": w.FEATURED, "confirm": "yes"}
    )
    assert no_reason.status_code == 400
    assert "needs a reason" in no_reason.text
    confirmed = await dash.form(
        "/sims",
        "/sims/actions",
        {"action": "cancel", "iccid": w.FEATURED, "confirm": "yes", "reason": "lost in transit"},
    )
    assert confirmed.status_code == 200
    # the confirmation pages published nothing: the one event is the confirmed cancel
    [event] = await dash.events(SIM_LIFECYCLE.name, 2, within=3)
    assert isinstance(event, SimCancelRequested)
    assert event.data.reason == "lost in transit"


async def test_api_commands_publish_the_requested_events(dash: Dash) -> None:
    calls = [
        ("activate", [w.PENDING], SimActivationRequested),
        ("finalize", [w.PROVISIONING], SyncRequested),
        ("sync", [w.SUSPENDED], SyncRequested),
        ("verify", [w.FAILED_VERIFY], VerificationRequested),
    ]
    ids = []
    for action, iccids, _kind in calls:
        response = await dash.http.post(f"/api/sims/{action}", json={"iccids": iccids})
        assert response.status_code == 200, response.text
        ids += response.json()["event_ids"]
    refused = await dash.http.post("/api/sims/cancel", json={"iccids": [w.FEATURED]})
    assert refused.status_code == 400
    assert "reason" in refused.text

    events = {e.id: e for e in await dash.events(SIM_LIFECYCLE.name, 4)}
    assert sorted(events) == sorted(ids)
    activation, finalize, sync, verify = (events[i] for i in ids)
    assert isinstance(activation, SimActivationRequested)
    assert (activation.data.imei, activation.data.reseller_id) == (w.IMEI, "acme")
    assert isinstance(finalize, SyncRequested)
    assert finalize.data.ref.startswith("finalize:")
    assert isinstance(sync, SyncRequested)
    assert not sync.data.ref.startswith("finalize:")
    assert isinstance(verify, VerificationRequested)
    assert verify.data.number == "+15550100006"


async def test_resend_publishes_one_request_per_reseller_endpoint(dash: Dash) -> None:
    page = (await dash.http.get("/deliveries")).text
    ids = re.findall(r'name="delivery" value="(\d+)"', page)
    assert len(ids) == 3

    response = await dash.form("/deliveries", "/deliveries/resend", {"delivery": ids[:2]})

    assert response.status_code == 200
    [event] = await dash.events(RESELLER_REGISTRY.name, 1)
    assert isinstance(event, WebhookResendRequested)
    assert (event.data.reseller_id, event.data.endpoint_id) == ("acme", w.ENDPOINT)
    assert sorted(event.data.message_ids) == ["msg-failed", "msg-retrying"]
    api = await dash.http.post(
        "/api/deliveries/resend", json={"reseller_id": "acme", "only_failed": True}
    )
    assert api.status_code == 200
    assert len(api.json()["event_ids"]) == 1


async def test_run_endpoints_take_their_own_secret_as_bearer_or_query(dash: Dash) -> None:
    for action, secret in RUN_SECRETS.items():
        other = RUN_SECRETS["sync" if action != "sync" else "rotate"]
        assert (await dash.anonymous.get(f"/api/run/{action}")).status_code == 401
        bad = await dash.anonymous.get(f"/api/run/{action}", params={"secret": other})
        assert bad.status_code == 401
        basic = await dash.http.get(f"/api/run/{action}")  # dashboard credentials are not it
        assert basic.status_code == 401
        if action == "cancel":
            refused = await dash.anonymous.get(f"/api/run/{action}", params={"secret": secret})
            assert refused.status_code == 400  # no ICCIDs: a cancel never picks SIMs itself
            continue
        by_query = await dash.anonymous.get(f"/api/run/{action}", params={"secret": secret})
        assert by_query.status_code == 200, by_query.text

    rotate = await dash.anonymous.post(
        "/api/run/rotate",
        params={"limit": 5},
        headers={"authorization": f"Bearer {RUN_SECRETS['rotate']}"},
    )
    assert rotate.json()["subjects"] == [w.FEATURED]  # the only active SIM that is due
    sync = await dash.anonymous.get(
        "/api/run/sync", params={"secret": RUN_SECRETS["sync"], "limit": 7}
    )
    assert len(sync.json()["event_ids"]) == 7
    cancel = await dash.anonymous.get(
        "/api/run/cancel",
        params={"secret": RUN_SECRETS["cancel"], "iccids": f"{w.PENDING},{w.CANCELLED}"},
    )
    assert cancel.json()["subjects"] == [w.PENDING]
    assert cancel.json()["skipped"] == [{"subject": w.CANCELLED, "reason": "already cancelled"}]


async def test_a_run_secret_left_unset_turns_its_endpoint_off(dash: Dash) -> None:
    settings = dashboard_settings(dash.settings)
    settings = settings.model_copy(
        update={"secrets": settings.secrets.model_copy(update={"sync_secret": SecretStr("")})}
    )
    app = create_dashboard_app(
        settings, dash.pool, Bus(build_broker(settings.kafka, "x")), ControlledClock(NOW)
    )
    async with serve_http(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/api/run/sync", params={"secret": ""})
        assert response.status_code == 503
        assert "SYNC_SECRET" in response.text


async def test_an_uploaded_sheet_is_imported_and_summarised(dash: Dash) -> None:
    sheet = (
        b"iccid,imei,reseller_id,status\n"
        b"89012600000000010002,356938035643809,acme,pending\n"
        b"89012600000000010010,356938035643809,acme,active\n"
        b"12345,356938035643809,acme,pending\n"
    )
    html = (await dash.http.get("/controls")).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token

    response = await dash.http.post(
        "/import",
        data={"csrf_token": token.group(1)},
        files={"file": ("sims.csv", sheet, "text/csv")},
    )

    assert response.status_code == 200, response.text
    assert "accepted 1" in response.text
    assert "line 4" in response.text
    events = await dash.events(SIM_LIFECYCLE.name, 2)
    assert {e.type for e in events} == {"sim.activation_requested", "sim.reseller_assigned"}
    api = await dash.http.post("/api/import", content=sheet, headers={"content-type": "text/csv"})
    assert api.status_code == 200
    assert api.json()["accepted"] == ["89012600000000010002"]


async def test_disabled_endpoint_banner_and_reenabling_with_redelivery(dash: Dash) -> None:
    refused = await dash.http.post(
        f"/api/resellers/acme/endpoints/{w.ENDPOINT}/enable", json={"redeliver": True}
    )
    assert refused.status_code == 422  # it is enabled
    assert '<aside class="banner"' not in (await dash.http.get("/")).text
    await dash.pool.execute(
        "UPDATE reseller_webhooks SET enabled = false, health = 'disabled', disabled_at = $2, "
        "disabled_reason = 'every delivery failed for 3 days', failing_since = $3 "
        "WHERE endpoint_id = $1",
        w.ENDPOINT, NOW, NOW - timedelta(days=3),
    )  # fmt: skip
    await dash.pool.execute(
        "INSERT INTO webhook_claims (message_id, endpoint_id, reseller_id, event_type, "
        "correlationid, body, state, lease_until, started_at, created_at) "
        "VALUES ('msg-missed', $1, 'acme', 'sms.received', 'c', '{}', 'skipped', $2, $2, $2)",
        w.ENDPOINT, NOW - timedelta(hours=1),
    )  # fmt: skip

    overview = (await dash.http.get("/")).text
    banner = overview.split('<aside class="banner"', 1)[1].split("</aside>", 1)[0]
    assert w.ENDPOINT in banner
    assert "every delivery failed for 3 days" in banner
    assert w.URL_TOKEN not in overview
    page = (await dash.http.get("/resellers")).text
    assert "redeliver 1 missed delivery" in page
    missed = await dash.http.get(f"/api/resellers/acme/endpoints/{w.ENDPOINT}/missed")
    assert missed.json()["missed"] == 1

    action = f"/resellers/acme/endpoints/{w.ENDPOINT}/enable"
    response = await dash.form("/resellers", action, {"redeliver": "true"})

    assert response.status_code == 303
    enabled, resend = await dash.events(RESELLER_REGISTRY.name, 2)
    assert isinstance(enabled, WebhookEndpointEnabled)
    assert (enabled.data.endpoint_id, enabled.data.requested_by) == (
        w.ENDPOINT,
        f"dashboard:{USER}",
    )
    assert isinstance(resend, WebhookResendRequested)
    assert resend.data.endpoint_id == w.ENDPOINT
    assert resend.data.only_failed
    assert resend.data.since is not None
    assert resend.data.since <= NOW - timedelta(days=3)
