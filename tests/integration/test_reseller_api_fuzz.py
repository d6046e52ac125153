"""schemathesis drives the reseller API from its own OpenAPI document with a read-write token:
valid and invalid requests alike never get a 5xx, and they reach the handlers (past the token).

Served over HTTP as the dashboard mounts it, on the real Postgres and broker of the portal world,
with a reseller holding a SIM, an SMS, a delivery and an endpoint for the fuzzer to find."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest
from starlette.middleware.base import BaseHTTPMiddleware

from dashboard.reseller_api.app import PREFIX
from infra.http import serve_http
from infra.settings import Settings
from tests.integration.test_dashboard_fuzz import count_answers, schemathesis
from tests.integration.test_reseller_api import numbered_sim
from tests.support.portal_world import portal_world
from tests.support.webhook_world import sms

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)
async def test_fuzzed_reseller_api_requests_never_get_a_server_error(
    settings: Settings, kafka_bootstrap: str, topics: list[str], tmp_path: Path
) -> None:
    answers: Counter[tuple[str, int]] = Counter()
    async with portal_world(settings, kafka_bootstrap) as portal:
        world = portal.world
        await world.reseller("acme", {"main": "ok"})
        await numbered_sim(world, "8901260000000000001", "+15559870001", "acme")
        async with world.consumer():
            await world.publish([sms("+15559870001", "fuzz me")])
            await world.receiver.wait_for(1, timeout=30, endpoint_id="main")
        token = (await portal.token("acme", "fuzzer")).token
        portal.api.add_middleware(BaseHTTPMiddleware, dispatch=count_answers(answers, Counter()))
        async with serve_http(portal.api) as url:
            async with httpx.AsyncClient() as http:
                schema = (await http.get(f"{url}{PREFIX}/openapi.json")).raise_for_status()
            (tmp_path / "openapi.json").write_bytes(schema.content)
            code, report = await schemathesis(
                f"{url}{PREFIX}", tmp_path, "--header", f"Authorization:Bearer {token}"
            )
    assert code == 0, report[-4000:]
    assert not [answer for answer in answers if answer[1] >= 500], answers
    # past the token, into the handlers (the fuzzer's own coverage phase also drops the token)
    reached = sum(n for (_, status), n in answers.items() if status < 400 or status == 404)
    assert reached >= 20, answers
