"""schemathesis drives the dashboard's JSON API from its own OpenAPI schema, authenticated like an
operator's script: valid and invalid requests alike must never get a 5xx.

The dashboard runs as in production: a real Postgres seeded as the projections would leave it
(tests/support/dashboard_world.py), a real broker for the commands it publishes and a real
``HelixClient`` talking to the Helix sandbox for the carrier lookups. Two runs: the API behind
Basic auth (``DASHBOARD_AUTH``; its writes are JSON, which the fuzzer sends) and the old
automation's ``/api/run/*`` with its bearer secret. A middleware counts every answer, so the
test also proves the fuzzer got past the authentication and reached the handlers.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import Request, Response
from pydantic import SecretStr
from starlette.middleware.base import BaseHTTPMiddleware

from dashboard.app import create_dashboard_app
from infra.bus import Bus
from infra.helix.client import HelixClient
from infra.http import serve_http
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import SecretsSettings, Settings
from sandbox.helix import create_helix_sandbox
from sandbox.helix_world import HelixWorld
from tests.integration.test_dashboard import NOW, PASSWORD, USER
from tests.integration.test_dashboard_helix_query import (
    CLIENT_ID,
    FAST,
    GRANT_PASSWORD,
    USERNAME,
    activate,
    helix_settings,
)
from tests.support import dashboard_world as w
from tests.support.clock import ControlledClock

pytestmark = pytest.mark.integration

RUN_SECRET = "fuzz-run-secret-5f1e9a"  # every /api/run action takes it, so one header fits all


def fuzz_settings(settings: Settings, carrier_url: str) -> Settings:
    run = SecretStr(RUN_SECRET)
    return settings.model_copy(
        update={
            "secrets": SecretsSettings(
                dashboard_auth=SecretStr(f"{USER}:{PASSWORD}"),
                bulk_run_secret=run,
                finalizer_run_secret=run,
                admin_run_secret=run,
                sync_secret=run,
                cancel_secret=run,
                gateway_secret=SecretStr("gateway-secret-e1f2"),
            ),
            "helix": helix_settings(carrier_url),
        }
    )


async def schemathesis(url: str, work: Path, *options: str) -> tuple[int, str]:
    """Runs the fuzzer on the schema the dashboard serves (fetched here: the ``/api/run`` pass
    holds no Basic credentials to fetch it itself)."""
    schema = work / "openapi.json"
    if not schema.exists():
        async with httpx.AsyncClient(auth=(USER, PASSWORD)) as http:
            schema.write_bytes(
                (await http.get(f"{url}/api/openapi.json")).raise_for_status().content
            )
    fuzz = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        str(schema),
        "--url",
        url,
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "20",
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report-dir",
        str(work / "report"),
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(fuzz.communicate(), 420)
    assert fuzz.returncode is not None
    return fuzz.returncode, output.decode(errors="replace")


BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def count_answers(
    answers: Counter[tuple[str, int]], unauthenticated: Counter[int]
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """``unauthenticated``: answers to API requests without the operator's Basic credentials,
    which the fuzzer sends on purpose since the document declares the security scheme."""

    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        path = request.url.path  # the fuzzer's capability probes land outside /api/
        area = "run" if path.startswith("/api/run/") else "api" if path.startswith("/api/") else ""
        if area == "api" and request.headers.get("authorization") != BASIC:
            unauthenticated[response.status_code] += 1
        else:
            answers[area, response.status_code] += 1
        return response

    return middleware


@pytest.mark.timeout(900)
async def test_fuzzed_api_requests_never_get_a_server_error(
    settings: Settings, database_url: str, kafka_bootstrap: str, topics: list[str], tmp_path: Path
) -> None:
    world = HelixWorld(client_id=CLIENT_ID, username=USERNAME, password=GRANT_PASSWORD)
    line = activate(world, 1)
    pool = await create_pool(database_url)
    answers: Counter[tuple[str, int]] = Counter()
    unauthenticated: Counter[int] = Counter()
    try:
        async with pool.acquire() as conn:
            await w.seed(conn, ControlledClock(NOW).now())
        await pool.execute(
            "UPDATE sims SET mobility_subscription_id = $1 WHERE iccid = $2",
            line.subscription_id,
            w.FEATURED,
        )
        async with serve_http(create_helix_sandbox(world)) as carrier_url:
            configured = fuzz_settings(settings, carrier_url)
            broker = build_broker(configured.kafka, kafka_bootstrap)
            async with broker, httpx.AsyncClient(base_url=carrier_url, timeout=5) as carrier:
                bus = Bus(broker, configured.kafka.topic_prefix)
                helix = HelixClient(carrier, configured.helix, pool, bus.emit, policy=FAST)
                app = create_dashboard_app(configured, pool, bus, ControlledClock(NOW), helix=helix)
                app.add_middleware(
                    BaseHTTPMiddleware, dispatch=count_answers(answers, unauthenticated)
                )
                async with serve_http(app) as url:
                    api = await schemathesis(
                        url,
                        tmp_path,
                        "--auth",
                        f"{USER}:{PASSWORD}",
                        "--exclude-path-regex",
                        "^/api/run/",
                    )
                    run = await schemathesis(
                        url,
                        tmp_path,
                        "--header",
                        f"Authorization:Bearer {RUN_SECRET}",
                        "--include-path-regex",
                        "^/api/run/",
                    )
    finally:
        await pool.close()
    for code, report in (api, run):
        assert code == 0, report[-4000:]
    assert not [answer for answer in answers if answer[1] >= 500], answers
    for area in ("api", "run"):
        reached = sum(n for (a, status), n in answers.items() if a == area and status < 400)
        assert reached >= 20, (area, answers)  # past the authentication, into the handlers
    assert answers["api", 401] == 0, answers  # the operator's credentials always let in
    assert set(unauthenticated) <= {401}, unauthenticated  # and nothing else does
    assert world.calls["details"] + world.calls["reason_codes"] > 0  # the lookups reached Helix
