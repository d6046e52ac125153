"""One grep for every secret after an end-to-end run: logs, topics, tables, pages.

The runtime runs in this process as ``simfleet run`` composes it (projector, bridge, workers,
scheduler, dashboard; the Helix and Skyline sandboxes), every secret configured to a distinct
value, and goes through an operator's day: a reseller and its endpoint created through the
dashboard API (the reseller receiver runs here and checks signatures), a sheet of SIMs
imported, activated, numbered (and their verification settled), SMS texted to the SIMs
pushed by the sandbox gateways through the bridge and delivered as signed webhooks, a Helix lookup
from the dashboard, the old automation's run URL with its secret in the query, pushes with the
secret that the bridge refuses; then a gateway and the carrier that echo their requests in their
errors (credentials, bearer token) while a number is verified, a SIM activated and a lookup made.
Then every record of every topic (DLQs included), every row of
every table in the public schema (as text), every structlog line and stdlib log record, and the
dashboard's pages and API answers are searched for each secret: the configured ones, the
Basic-auth password, the Fernet sealing key, the endpoint's signing secret (in plaintext; it is
stored sealed) and every access token the Helix sandbox issued.

Two places hold a secret by design and are left out, each named: the answer to the endpoint's
creation (the signing secret is shown there once), and ``token_cache.access_token`` (the Helix
token shared by all processes is that table's purpose).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
import structlog
from aiokafka import AIOKafkaConsumer
from cryptography.fernet import Fernet
from pydantic import SecretStr

from events.topics import all_topics_with_dlqs
from infra.http import free_port, serve_http
from infra.logging import configure
from infra.settings import HelixSettings, SecretsSettings, Settings
from sandbox.gateways import GatewayFaults
from sandbox.helix import HelixFaults
from sandbox.helix_world import HelixWorld, make_iccid, make_imei
from sandbox.reseller import ReceiverState, create_reseller_receiver
from simfleet.app import Runtime
from tests.support.eventually import eventually
from tests.support.stack import components, running

pytestmark = pytest.mark.integration

USER, PASSWORD = "ops", "dash-pw-Zq81-secret"
SIMS = 3
OUTSIDE = "+18005550100"
# the verification outcome is settled: with no proven sender in a new fleet it is "skipped"
NUMBERED = """
SELECT iccid, current_number AS number FROM sims
WHERE number_status IN ('verified', 'skipped') AND reseller_id = 'acme' ORDER BY iccid
"""
PAGES = ("/", "/sims", "/sms", "/deliveries", "/helix", "/resellers", "/controls")
API_READS = (
    *("/api/overview", "/api/sims", "/api/sms", "/api/deliveries", "/api/helix", "/api/resellers"),
    *("/api/resellers/acme/endpoints", "/api/resellers/acme/deliveries", "/api/openapi.json"),
)
# a table's name comes from pg_tables, never from input
ROWS_AS_TEXT = 'SELECT t::text AS row FROM public."{table}" t'


def configured(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "secrets": SecretsSettings(
                gateway_secret=SecretStr("gw-secret-Hq2v7-e2e"),
                finalizer_run_secret=SecretStr("finalizer-secret-Lp3-e2e"),
                admin_run_secret=SecretStr("admin-secret-Xw9-e2e"),
                bulk_run_secret=SecretStr("bulk-secret-Mn4-e2e"),
                sync_secret=SecretStr("sync-secret-Tr6-e2e"),
                cancel_secret=SecretStr("cancel-secret-Bv1-e2e"),
                dashboard_auth=SecretStr(f"{USER}:{PASSWORD}"),
            ),
            "helix": HelixSettings(
                client_id="hx-client-Jd5-e2e",
                grant_username="ops@simfleet.example",
                grant_password=SecretStr("hx-grant-pw-Kc8-e2e"),
                activation_client_id=230,
            ),
            "webhooks": settings.webhooks.model_copy(
                update={
                    "allow_private": True,
                    "allow_http": True,
                    "sealing_key": SecretStr(Fernet.generate_key().decode()),
                }
            ),
            "bridge_port": free_port(),
            "dashboard_port": free_port(),
        }
    )


async def every_record(bootstrap: str, prefix: str) -> list[bytes]:
    """Key, value and headers of every record on every topic, DLQs included."""
    names = [t.full_name(prefix) for t in all_topics_with_dlqs()]
    consumer = AIOKafkaConsumer(
        *names, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        found: list[bytes] = []
        empty_polls = 0
        while empty_polls < 6:  # the embedded broker's end offsets are not trusted (INFRA_NOTES)
            batch = await consumer.getmany(timeout_ms=500)
            empty_polls = 0 if batch else empty_polls + 1
            for records in batch.values():
                for r in records:
                    found += [r.key or b"", r.value or b""]
                    found += [k.encode() + b"=" + v for k, v in r.headers]
        assert found, f"no records read from {len(names)} topics"
        return found
    finally:
        await consumer.stop()


async def every_row(conn: asyncpg.Connection) -> dict[str, list[str]]:
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )
    return {
        t["tablename"]: [
            r["row"] for r in await conn.fetch(ROWS_AS_TEXT.format(table=t["tablename"]))
        ]
        for t in tables
    }


EVENT_LOGGED = "SELECT payload::text FROM event_log WHERE type = $1 AND key = $2"


@dataclass
class Seen:
    """What the run showed the operator, and the secrets it created on the way."""

    pages: list[str] = field(default_factory=list)
    signing_secrets: list[str] = field(default_factory=list)  # handed out by the dashboard
    tokens: list[str] = field(default_factory=list)  # issued by the Helix sandbox
    gateway_password: str = ""  # the sandbox gateways' (SK_PASSWORD is unset here)


async def operators_day(
    rt: Runtime, dash: httpx.AsyncClient, receiver: ReceiverState, receiver_url: str
) -> Seen:
    seen = Seen()
    network = rt.gateway_network
    assert network is not None
    world: HelixWorld = network.ports.carrier
    seen.gateway_password = network.password

    # a reseller and its endpoint, through the API; the receiver checks every signature
    created = await dash.post("/api/resellers", json={"reseller_id": "acme", "name": "Acme"})
    assert created.status_code == 202, created.text
    await eventually(lambda: rt.pool.fetchval("SELECT 1 FROM resellers WHERE id = 'acme'"))
    endpoint = await dash.post(
        "/api/resellers/acme/endpoints",
        json={"url": f"{receiver_url}/hooks/ep1", "endpoint_id": "ep1"},
    )
    assert endpoint.status_code == 201, endpoint.text
    seen.signing_secrets.append(endpoint.json()["secret"])  # that answer is not searched
    receiver.register("ep1", seen.signing_secrets[0])

    # SIMs imported, activated at the carrier, numbered, their verification settled
    sheet = "iccid,imei,reseller_id\n" + "".join(
        f"{make_iccid(n)},{make_imei(n)},acme\n" for n in range(1, SIMS + 1)
    )
    imported = await dash.post(
        "/api/import", content=sheet, params={"filename": "sims.csv"},
        headers={"content-type": "text/csv"},
    )  # fmt: skip
    assert imported.status_code == 200, imported.text
    seen.pages.append(imported.text)
    online = await eventually(
        lambda: rt.pool.fetch(NUMBERED), until=lambda rows: len(rows) == SIMS, within=90
    )

    # the gateways report their ports (dev-status push through the bridge)
    await network.push_status()
    await eventually(lambda: rt.pool.fetchval("SELECT count(*) FROM gateway_ports"), within=30)

    # SMS from outside: gateway push → bridge → Kafka → signed webhooks
    for n, row in enumerate(online):
        assert await network.text_from_outside(OUTSIDE, row["number"], f"code {n}") == "delivered"

    async def sms_hooks() -> int:
        got = receiver.received("ep1")
        assert all(d.signature_valid for d in got), "a webhook's signature did not verify"
        return sum(d.accepted and d.payload["event_type"] == "sms.received" for d in got)

    await eventually(sms_hooks, until=lambda n: n >= SIMS, within=60)

    # a Helix lookup from the dashboard; every page and API read
    lookup = await dash.post("/api/helix/details", json={"iccid": online[0]["iccid"]})
    assert lookup.status_code == 200, lookup.text
    seen.pages.append(lookup.text)
    for path in (*PAGES, *API_READS, *(f"/sims/{r['iccid']}" for r in online)):
        answer = await dash.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        seen.pages.append(answer.text)
    seen.pages += await echoed_errors(rt, dash, [r["iccid"] for r in online])
    seen.tokens = list(world.tokens)
    assert seen.tokens, "the carrier issued no token: the run did not reach Helix"
    return seen


async def echoed_errors(rt: Runtime, dash: httpx.AsyncClient, iccids: list[str]) -> list[str]:
    """A gateway answering "Server Error for username=…&password=…" while a number is verified,
    then a carrier echoing each request (bearer token included) refusing an activation and a
    lookup. Returns what the dashboard answered."""
    network, helix = rt.gateway_network, rt.helix_sandbox
    assert network is not None
    assert helix is not None
    sender, target = iccids[0], iccids[1]
    # a proven sender (a new fleet has none: the first SIM's verification is skipped)
    await rt.pool.execute("UPDATE sims SET number_status = 'verified' WHERE iccid = $1", sender)
    network.switch("echoing", GatewayFaults(limit=None))
    asked = await dash.post("/api/sims/verify", json={"iccids": [target]})
    assert asked.status_code == 200, asked.text
    skipped = await eventually(
        lambda: rt.pool.fetch(EVENT_LOGGED, "verification.skipped", target),
        until=lambda rows: any("Server Error for" in r["payload"] for r in rows),
        within=90,
    )
    assert "username=" in skipped[-1]["payload"], "the gateway's echo did not reach the event"
    network.switch("happy")

    helix.switch(
        "echoing", HelixFaults(fraction=1.0, operations=frozenset({"activation", "details"}))
    )
    extra = make_iccid(SIMS + 1)
    imported = await dash.post(
        "/api/import", content=f"iccid,imei,reseller_id\n{extra},{make_imei(SIMS + 1)},acme\n",
        params={"filename": "more.csv"}, headers={"content-type": "text/csv"},
    )  # fmt: skip
    assert imported.status_code == 200, imported.text
    failed = await eventually(
        lambda: rt.pool.fetchval("SELECT last_error FROM sims WHERE iccid = $1", extra),
        within=60,
    )
    assert "Bad Request for POST" in failed, failed
    lookup = await dash.post("/api/helix/details", json={"iccid": target})
    assert lookup.status_code == 502, lookup.text
    assert "Bad Request for POST" in lookup.text
    helix.switch("happy")
    return [imported.text, lookup.text]


async def secret_offered_everywhere(settings: Settings, dash: httpx.AsyncClient) -> list[str]:
    """Pushes the bridge refuses, the gateway secret in each place it is accepted; the old
    automation's run URL with its secret in the query. Returns the run's answer."""
    secret = settings.secrets.gateway_secret.get_secret_value()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.bridge_port}") as bridge:
        for refused in (
            await bridge.post("/sms", params={"secret": secret}, content=b"{broken"),
            await bridge.post(f"/s/{secret}/sms", content=b"[1, 2"),
            await bridge.post("/sms", headers={"x-gateway-secret": secret}, json={"x": 1}),
            await bridge.post("/sms", params={"secret": f"wrong-{secret}"}, json={}),
        ):
            assert refused.status_code in (400, 401, 422), refused.text
    sync = settings.secrets.sync_secret.get_secret_value()
    run = await dash.get("/api/run/sync", params={"secret": sync}, auth=None)
    assert run.status_code == 200, run.text
    return [run.text]


@pytest.mark.timeout(300)
async def test_no_secret_in_logs_topics_tables_or_pages_after_a_full_run(
    settings: Settings,
    kafka_bootstrap: str,
    database_url: str,
    topics: list[str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = configured(settings)
    before = structlog.get_config()
    configure("json", "DEBUG", [v for v in settings.secret_values().values() if v])
    caplog.set_level(logging.INFO)
    receiver_app, receiver = create_reseller_receiver()
    parts = components("projector", "bridge", "workers", "scheduler", "dashboard")
    try:
        async with (
            serve_http(receiver_app) as receiver_url,
            running(settings, kafka_bootstrap, database_url, parts) as rt,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{settings.dashboard_port}",
                auth=(USER, PASSWORD),
                timeout=30,
            ) as dash,
        ):
            seen = await operators_day(rt, dash, receiver, receiver_url)
            seen.pages += await secret_offered_everywhere(settings, dash)
        records = await every_record(kafka_bootstrap, settings.kafka.topic_prefix)
        conn = await asyncpg.connect(database_url)
        try:
            tables = await every_row(conn)
        finally:
            await conn.close()
    finally:
        structlog.configure(**before)
    out, err = capfd.readouterr()
    # the HTTP clients' lines of whoever calls simfleet (the sandbox gateways, this test as a
    # gateway or a cron job) are the caller's logs, not simfleet's: the secret is in their URL
    ours = [f"http://127.0.0.1:{port}/" for port in (settings.bridge_port, settings.dashboard_port)]
    callers = [
        r for r in caplog.records if r.name == "httpx" and any(u in r.getMessage() for u in ours)
    ]
    assert callers, "no caller's line was told apart: the filter below would hide nothing"
    records_ours = [
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records if r not in callers
    ]
    logs = "\n".join([out, err, *records_ours])

    secrets = {
        **{f"configured {name}": v for name, v in settings.secret_values().items() if v},
        "dashboard password": PASSWORD,
        **{f"signing secret {n}": s for n, s in enumerate(seen.signing_secrets)},
        **{
            f"signing key {n}": s.removeprefix("whsec_") for n, s in enumerate(seen.signing_secrets)
        },
        **{f"helix token {n}": t for n, t in enumerate(seen.tokens)},
        "gateway password": seen.gateway_password,
    }
    assert len(secrets) >= 14
    del tables["token_cache"]  # the shared Helix token: that table's purpose
    for table in ("inbound_sms", "helix_api_logs", "webhook_claims", "event_log", "gateway_ports"):
        assert tables[table], f"{table} is empty: the run did not go through it"
    assert "helix_lookup" in logs  # structlog's lines were captured
    places = {
        "logs": [logs],
        "topics": [r.decode(errors="replace") for r in records],
        "pages": seen.pages,
        **{f"table {name}": rows for name, rows in tables.items()},
    }
    leaks = [
        f"{what} in {where}"
        for what, value in secrets.items()
        for where, texts in places.items()
        if any(value in text for text in texts)
    ]
    assert not leaks, leaks
