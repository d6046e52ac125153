"""What an outsider can reach: the bridge's public port carries the gateway routes and /healthz
only; secrets in URLs can be switched off; input that is too deep or too long is refused and
kept, never a 500."""

import base64
import warnings
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from pydantic import SecretStr

from dashboard.api_resellers import MAX_RESEND_IDS
from dashboard.app import create_dashboard_app
from events.codec import decode
from events.gateway import GatewayPayloadRejected
from events.topics import GATEWAY_REJECTED
from infra.bus import Bus
from infra.clock import SystemClock
from infra.http import free_port, serve_http
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import SecretsSettings, Settings
from producers.skyline.bridge import create_bridge_app
from tests.integration.test_gateway_bridge import read_records
from tests.support.stack import components, running

pytestmark = pytest.mark.integration

SECRET = "gateway-secret-for-closed-surfaces"
PUSH = {"type": "recv-sms", "sms": [[0, "1.01", 1, "Google", "", "hi"]]}


def with_secret(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(
        update={
            "secrets": SecretsSettings(
                gateway_secret=SecretStr(SECRET), sync_secret=SecretStr("sync-secret-0123456789")
            ),
            "bridge_port": free_port(),
            "ops_port": free_port(),
            **changes,
        }
    )


async def test_the_public_port_serves_pushes_and_health_only(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> None:
    settings = with_secret(settings)
    public = f"http://{settings.bridge_host}:{settings.bridge_port}"
    ops = f"http://{settings.ops_host}:{settings.ops_port}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with (
            running(settings, kafka_bootstrap, database_url, components("bridge")),
            httpx.AsyncClient(timeout=30) as http,
        ):
            assert (await http.get(f"{public}/healthz")).status_code == 200
            for path in ("/metrics", "/readyz", "/docs", "/redoc", "/openapi.json"):
                assert (await http.get(f"{public}{path}")).status_code == 404, path
            assert (await http.get(f"{ops}/metrics")).status_code == 200
            assert (await http.get(f"{ops}/readyz")).status_code == 200
            page = await http.get(f"{ops}/bridge/docs")
            spec = (await http.get(f"{ops}/bridge/openapi.json")).json()
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert "<script" not in page.text.lower()
    assert "src=" not in page.text  # nothing loaded: no CDN, no script, no image
    assert "<link" not in page.text
    assert "POST /sms" in page.text
    assert {"/sms", "/status", "/sms/simple"} <= set(spec["paths"])
    assert not [w for w in caught if "Duplicate Operation ID" in str(w.message)]


@pytest.fixture
async def strict_bridge(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[str]:
    strict = with_secret(settings, secrets_in_urls=False)
    broker = build_broker(strict.kafka, kafka_bootstrap)
    async with (
        broker,
        serve_http(
            create_bridge_app(strict, Bus(broker, strict.kafka.topic_prefix), SystemClock())
        ) as url,
    ):
        yield url


async def test_secrets_in_urls_can_be_switched_off(strict_bridge: str) -> None:
    async with httpx.AsyncClient(base_url=strict_bridge, timeout=30) as http:
        by_query = await http.post("/sms", json=PUSH, params={"secret": SECRET})
        by_path = await http.post(f"/s/{SECRET}/sms", json=PUSH)
        by_header = await http.post("/sms", json=PUSH, headers={"x-gateway-secret": SECRET})
    assert (by_query.status_code, by_path.status_code, by_header.status_code) == (401, 404, 200)


async def test_the_documents_offer_no_secret_in_a_url_when_it_is_refused(
    settings: Settings, database_url: str, kafka_bootstrap: str
) -> None:
    pool = await create_pool(database_url)
    try:
        for secrets_in_urls in (True, False):
            chosen = with_secret(settings, secrets_in_urls=secrets_in_urls)
            bus = Bus(build_broker(chosen.kafka, kafka_bootstrap), chosen.kafka.topic_prefix)
            documents = {
                "bridge": create_bridge_app(chosen, bus, SystemClock()).openapi(),
                "dashboard": create_dashboard_app(chosen, pool, bus, SystemClock()).openapi(),
            }
            for name, document in documents.items():
                offered = document["components"]["securitySchemes"]
                in_url = {n for n, scheme in offered.items() if scheme.get("in") == "query"}
                required = {
                    n for op in _operations(document) for need in op["security"] for n in need
                }
                assert bool(in_url) is secrets_in_urls, (name, secrets_in_urls)
                assert required, name
                assert required <= set(offered), name
    finally:
        await pool.close()


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in document["paths"].values() for op in item.values() if "security" in op]


async def test_deeply_nested_json_is_a_400_kept_on_gateway_rejected(
    strict_bridge: str, settings: Settings, kafka_bootstrap: str
) -> None:
    deep = b'{"type": "recv-sms", "sms": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with httpx.AsyncClient(base_url=strict_bridge, timeout=30) as http:
        refused = await http.post("/sms", content=deep, headers={"x-gateway-secret": SECRET})
    assert refused.status_code == 400
    assert "nested too deeply" in refused.json()["error"]
    topic = settings.kafka.topic_prefix + GATEWAY_REJECTED.name
    (record,) = await read_records(kafka_bootstrap, topic, count=1)
    kept = cast(GatewayPayloadRejected, decode(record.value)).data
    assert (kept.status_code, base64.b64decode(kept.body_base64)) == (400, deep)


async def test_run_secrets_in_urls_can_be_switched_off_and_arrays_are_bounded(
    settings: Settings, database_url: str, kafka_bootstrap: str, topics: list[str]
) -> None:
    strict = with_secret(settings, secrets_in_urls=False)
    strict = strict.model_copy(
        update={
            "secrets": strict.secrets.model_copy(
                update={"dashboard_auth": SecretStr("operator:dashboard-password-1")}
            )
        }
    )
    run_secret = "sync-secret-0123456789"
    pool = await create_pool(database_url)
    broker = build_broker(strict.kafka, kafka_bootstrap)
    try:
        async with broker:
            app = create_dashboard_app(
                strict, pool, Bus(broker, strict.kafka.topic_prefix), SystemClock()
            )
            async with serve_http(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
                by_query = await http.post("/api/run/sync", params={"secret": run_secret})
                by_bearer = await http.post(
                    "/api/run/sync", headers={"authorization": f"Bearer {run_secret}"}
                )
                off = await http.post(
                    "/api/run/cancel", headers={"authorization": f"Bearer {run_secret}"}
                )
                too_many = await http.post(
                    "/api/resellers/acme/deliveries/resend",
                    json={"message_ids": ["m"] * (MAX_RESEND_IDS + 1)},
                    auth=("operator", "dashboard-password-1"),
                )
    finally:
        await pool.close()
    assert (by_query.status_code, by_bearer.status_code) == (401, 200)
    assert off.status_code == 503  # CANCEL_SECRET unset: that action is off
    assert too_many.status_code == 422
    assert "message_ids" in too_many.text
