"""Bounded input at the HTTP entry points: request heads over the limit are refused before any
authentication, bodies are capped as they arrive, and a big sheet upload does not stop the
process from answering meanwhile.

How fast health checks answer during a 20 MB upload and the upload's peak memory are measured
by ``bench/bench_upload.py``; here the bound is loose and guards the behaviour (the event loop
is never held for the whole sheet).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from dashboard.app import create_dashboard_app
from infra.bus import Bus
from infra.http import serve_http
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import SecretsSettings, Settings
from producers.bulk_import import MAX_BYTES
from producers.skyline.bridge import create_bridge_app
from sandbox.helix_world import make_iccid, make_imei
from tests.integration.test_dashboard import NOW
from tests.support.clock import ControlledClock

pytestmark = pytest.mark.integration

USER, PASSWORD = "operator", "limits-password-7c1d"


@dataclass
class Servers:
    bridge: str
    dashboard: str
    pool: asyncpg.Pool


@pytest.fixture
async def servers(
    settings: Settings, database_url: str, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[Servers]:
    configured = settings.model_copy(
        update={
            "secrets": SecretsSettings(
                dashboard_auth=SecretStr(f"{USER}:{PASSWORD}"),
                gateway_secret=SecretStr("gateway-secret-limits"),
            )
        }
    )
    pool = await create_pool(database_url)
    broker = build_broker(configured.kafka, kafka_bootstrap)
    try:
        async with broker:
            bus = Bus(broker, configured.kafka.topic_prefix)
            clock = ControlledClock(NOW)
            async with (
                serve_http(create_bridge_app(configured, bus, clock)) as bridge,
                serve_http(create_dashboard_app(configured, pool, bus, clock)) as dashboard,
            ):
                yield Servers(bridge, dashboard, pool)
    finally:
        await pool.close()


@pytest.mark.parametrize("where", ["bridge", "dashboard"])
async def test_a_request_head_over_the_limit_is_431_before_authentication(
    servers: Servers, where: str
) -> None:
    url = getattr(servers, where)
    async with httpx.AsyncClient(base_url=url) as client:
        normal = await client.get("/healthz", headers={"x-note": "a" * 10_000})
        huge_header = await client.get("/healthz", headers={"x-note": "a" * 100_000})
        many = await client.get("/", headers={f"x-{n}": "a" * 100 for n in range(1000)})
    huge_url = await raw_status(
        url, b"POST /sms?" + b"a" * 100_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n"
    )

    assert normal.status_code == 200
    for refused in (huge_header, many):  # unauthenticated: 401 had the head been read
        assert refused.status_code == 431, refused.text
        assert "over 32768 bytes" in refused.text
    assert huge_url.startswith(b"HTTP/1.1 431"), huge_url


async def raw_status(url: str, request: bytes) -> bytes:
    """The status line for bytes no HTTP client would send."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.readline()
    finally:
        writer.close()


async def test_an_upload_declared_over_the_limit_is_refused_before_its_body_is_read(
    servers: Servers,
) -> None:
    status = await raw_status(
        servers.dashboard,
        b"POST /import HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=b\r\n"
        + f"content-length: {MAX_BYTES + 1024 * 1024}\r\n\r\n".encode(),
    )  # and not one byte of the body

    assert status.startswith(b"HTTP/1.1 413"), status


async def test_a_body_streamed_past_the_limit_is_cut_off_with_413(servers: Servers) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = b"x" * (1024 * 1024)
        while sent < 3 * 1024 * 1024:  # chunked: no length declared; forms take up to 1 MiB
            sent += len(chunk)
            yield chunk

    async with httpx.AsyncClient(base_url=servers.dashboard, auth=(USER, PASSWORD)) as client:
        response = await client.post(
            "/api/resellers", content=endless(), headers={"content-type": "application/json"}
        )

    assert response.status_code == 413, response.text


def big_sheet(rows: int) -> bytes:
    """Rows the import reads and skips (status), so the test publishes little."""
    lines = [f"{make_iccid(n)},{make_imei(n)},acme,active" for n in range(1, rows + 1)]
    lines[-1] = f"{make_iccid(rows + 1)},{make_imei(rows + 1)},acme,pending"
    return ("iccid,imei,reseller_id,status\n" + "\n".join(lines) + "\n").encode()


@pytest.mark.timeout(300)
async def test_health_checks_are_answered_while_a_big_sheet_is_imported(
    servers: Servers,
) -> None:
    sheet = big_sheet(150_000)  # ~8.5 MB; reading it whole held the event loop for seconds
    async with httpx.AsyncClient(
        base_url=servers.dashboard, auth=(USER, PASSWORD), timeout=120
    ) as client:
        html = (await client.get("/controls")).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert token
        upload = asyncio.create_task(
            client.post(
                "/import",
                data={"csrf_token": token.group(1)},
                files={"file": ("sims.csv", sheet, "text/csv")},
            )
        )
        slowest = 0.0
        checks = 0
        async with httpx.AsyncClient(base_url=servers.bridge) as health:
            while not upload.done():
                began = time.perf_counter()
                assert (await health.get("/healthz")).status_code == 200
                slowest = max(slowest, time.perf_counter() - began)
                checks += 1
                await asyncio.sleep(0.02)
        response = await upload

    assert response.status_code == 200, response.text
    assert "accepted 1," in response.text
    assert "skipped 149999" in response.text
    assert checks >= 3  # the import ran long enough for the loop to be probed during it
    assert slowest < 1.0, f"a health check waited {slowest:.2f}s during the upload"
