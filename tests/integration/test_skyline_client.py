"""SkylineClient against the sandbox gateways over real HTTP (EXTERNAL_APIS §1.2, §1.3)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog
from pydantic import SecretStr

from infra.http import free_port, serve_http
from infra.retry import RetryPolicy
from infra.settings import SkylineSettings
from infra.skyline import SkylineClient, SkylineRejected, SkylineUnavailable
from sandbox.gateway_api import create_gateways_sandbox
from sandbox.gateways import GatewayFaults, GatewayMode, GatewayNetwork
from sandbox.helix_world import HelixWorld, make_iccid, make_imei

pytestmark = pytest.mark.integration

PASSWORD = "sk-Gw-p4ss-Zq7%&x"
FAST = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.02, budget_s=3.0)


@dataclass
class Gateways:
    network: GatewayNetwork
    url: str
    carrier: HelixWorld

    def client(self, password: str = PASSWORD, url: str | None = None) -> SkylineClient:
        settings = SkylineSettings(host="127.0.0.1", username="ops", password=SecretStr(password))
        return SkylineClient(
            httpx.AsyncClient(base_url=url or self.url, timeout=2), settings, policy=FAST
        )

    def line(self, serial: int) -> tuple[str, str]:
        """A SIM with a number, seated in a port: (its port, its number)."""
        iccid = make_iccid(serial)
        sub = self.carrier.activate({"service": {"iccid": iccid, "imei": make_imei(serial)}})
        self.carrier.details({"mobilitySubscriptionId": sub.subscription_id})
        _, port = self.network.ports.insert_sim(iccid)
        return port, f"+1{sub.phone_number}"


@contextlib.contextmanager
def every_log_line() -> Iterator[list[MutableMapping[str, Any]]]:
    """structlog's lines at every level, whatever an earlier test configured."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**before)


@pytest.fixture
async def gateways() -> AsyncIterator[Gateways]:
    carrier = HelixWorld()
    network = GatewayNetwork(carrier, username="ops", password=PASSWORD)
    async with serve_http(create_gateways_sandbox(network)) as url:
        yield Gateways(network, url, carrier)
    await network.aclose()


async def test_an_sms_is_queued_from_a_port_with_credentials_in_the_query_only(
    gateways: Gateways, caplog: pytest.LogCaptureFixture
) -> None:
    port, _ = gateways.line(1)
    _, to = gateways.line(2)
    caplog.set_level(logging.INFO, logger="httpx")
    with every_log_line() as logs:
        status = await gateways.client().send_sms(port, to, "VERIFY ABC123", tid=1001)

    assert (status.tid, status.code, status.accepted) == (1001, 0, True)
    (task,) = gateways.network.tasks
    assert task == {"tid": 1001, "from": port, "to": to[1:], "sms": "VERIFY ABC123", "chs": "utf8"}
    assert len(to[1:]) == 11
    await gateways.network.drain()
    assert [s.fate for s in gateways.network.sent] == ["undeliverable"]  # no bridge connected
    assert gateways.network.counts["basic_auth_refused"] == 0
    logged = repr(logs) + caplog.text
    assert "skyline_called" in logged
    assert "password=***" in logged
    assert PASSWORD not in logged
    assert "sk-Gw" not in logged


async def test_a_retry_of_a_task_the_gateway_already_took_counts_as_accepted(
    gateways: Gateways,
) -> None:
    port, _ = gateways.line(3)
    _, to = gateways.line(4)
    client = gateways.client()
    await client.send_sms(port, to, "VERIFY ABC123", tid=7)
    again = await client.send_sms(port, to, "VERIFY ABC123", tid=7)
    assert (again.code, again.accepted) == (13, True)
    assert gateways.network.counts["accepted"] == 1


@pytest.mark.parametrize(
    ("case", "code"), [("bad_port", 2), ("empty_port", 5), ("suspended", 5), ("password", 14)]
)
async def test_permanent_refusals_raise_at_once(gateways: Gateways, case: str, code: int) -> None:
    port, to = gateways.line(5)
    client = gateways.client(password="wrong" if case == "password" else PASSWORD)
    if case == "bad_port":
        port = "999.01"
    elif case == "empty_port":
        port = "200.01"
    elif case == "suspended":
        line = gateways.carrier.subscriber_by_iccid(make_iccid(5))
        assert line is not None
        line.status = "SUSPENDED"
    with pytest.raises(SkylineRejected) as refused:
        await client.send_sms(port, to, "hello", tid=11)
    assert refused.value.code == code
    assert gateways.network.counts["send_requests"] == 1  # not retried


@pytest.mark.parametrize(("mode", "refusals"), [("busy", "refused:16"), ("flaky_5xx", None)])
async def test_transient_refusals_are_retried(
    gateways: Gateways, mode: GatewayMode, refusals: str | None
) -> None:
    port, to = gateways.line(6)
    gateways.network.switch(mode, GatewayFaults(limit=2))
    status = await gateways.client().send_sms(port, to, "hello", tid=12)
    assert status.accepted
    assert gateways.network.counts["send_requests"] == 3
    if refusals:
        assert gateways.network.counts[refusals] == 2


async def test_an_unreachable_gateway_is_unavailable_after_the_retries(gateways: Gateways) -> None:
    client = gateways.client(url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SkylineUnavailable) as down:
        await client.send_sms("1.01", "+16465550001", "hello", tid=13)
    assert "ConnectError" in str(down.value)
    assert PASSWORD not in str(down.value)


async def test_a_gateway_echoing_the_request_in_its_error_is_told_without_the_password(
    gateways: Gateways,
) -> None:
    port, to = gateways.line(8)
    gateways.network.switch("echoing", GatewayFaults(limit=None))
    with every_log_line() as logs, pytest.raises(SkylineUnavailable) as failed:
        await gateways.client().send_sms(port, to, "hello", tid=14)
    message = str(failed.value)
    assert "Server Error for" in message
    assert "username=ops" in message  # the echo is kept, for the operator, without the secret
    for secret in (PASSWORD, quote(PASSWORD, safe="")):  # as sent, and as the query carries it
        assert secret not in message
        assert secret not in str(logs)


async def test_the_port_list_and_a_basic_auth_header_refused(gateways: Gateways) -> None:
    port, number = gateways.line(8)
    (state,) = await gateways.client().port_status()
    assert (state.port, state.status_code, state.iccid, state.number) == (
        port, 3, make_iccid(8), number,
    )  # fmt: skip
    async with httpx.AsyncClient(base_url=gateways.url) as http:
        basic = await http.post("/goip_post_sms.html", auth=("ops", PASSWORD), json={})
    assert basic.status_code == 401
    assert gateways.network.counts["basic_auth_refused"] == 1
