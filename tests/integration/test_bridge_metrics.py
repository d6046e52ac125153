"""The bridge's request metrics, read the way Prometheus reads them: the text exposition parsed
by prometheus_client's own parser, after real pushes over HTTP to a real broker."""

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from infra.bus import Bus
from infra.clock import SystemClock
from infra.http import serve_http
from infra.kafka import build_broker
from infra.settings import SecretsSettings, Settings
from producers.skyline.bridge import create_bridge_app

pytestmark = pytest.mark.integration

SECRET = "gw-secret-for-metrics-4c1d"


def samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of one series name, by its labels (sorted)."""
    found = {}
    for family in text_string_to_metric_families(generate_latest().decode()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def requests(route: str, status: int) -> float:
    key = (("method", "POST"), ("route", route), ("status", str(status)))
    return samples("simfleet_bridge_requests_total").get(key, -1.0)


@pytest.fixture
async def bridge_url(
    settings: Settings, topics: list[str], kafka_bootstrap: str
) -> AsyncIterator[str]:
    configured = settings.model_copy(
        update={"secrets": SecretsSettings(gateway_secret=SecretStr(SECRET))}
    )
    broker = build_broker(configured.kafka, kafka_bootstrap)
    async with broker:
        bus = Bus(broker, configured.kafka.topic_prefix)
        async with serve_http(create_bridge_app(configured, bus, SystemClock())) as url:
            yield url


async def test_requests_are_counted_and_timed_by_route_template_and_status(
    bridge_url: str,
) -> None:
    # the app's documented answers exist at zero before any request
    assert requests("/sms/simple", 401) >= 0
    assert requests("/sms/simple", 503) >= 0
    before_ok, before_401 = requests("/sms/simple", 200), requests("/sms/simple", 401)
    before_path_form = requests("/s/{secret}/sms/simple", 200)
    sms = {
        "to": "+15559870000",
        "from": "+15551230000",
        "body": "metrics",
        "received_at": "2026-02-04T12:00:00Z",
    }
    async with httpx.AsyncClient(base_url=bridge_url) as http:
        ok = await http.post("/sms/simple", json=sms, headers={"x-gateway-secret": SECRET})
        refused = await http.post("/sms/simple", json=sms, headers={"x-gateway-secret": "wrong"})
        by_path = await http.post(f"/s/{SECRET}/sms/simple", json=sms)
        await http.get("/no/such/route")
    assert (ok.status_code, refused.status_code, by_path.status_code) == (200, 401, 200)
    assert requests("/sms/simple", 200) == before_ok + 1
    assert requests("/sms/simple", 401) == before_401 + 1
    assert requests("/s/{secret}/sms/simple", 200) == before_path_form + 1
    latency = samples("simfleet_bridge_request_duration_seconds_count")
    assert latency[(("method", "POST"), ("route", "/sms/simple"), ("status", "200"))] >= 1
    unmatched = samples("simfleet_bridge_requests_total")
    assert unmatched[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] >= 1
    exposition = generate_latest().decode()
    assert SECRET not in exposition, "a label carries the secret from the URL"
