"""WebhookSender against the sandbox reseller receiver, a real HTTP server on loopback."""

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.http import free_port, serve_http
from infra.settings import WebhookSettings
from infra.url_guard import validate_endpoint_url
from infra.webhook_sender import (
    ERROR_TEXT_BYTES,
    AttemptResult,
    EndpointTarget,
    Outcome,
    WebhookSender,
    classify,
    parse_retry_after,
)
from infra.webhook_signing import generate_secret
from sandbox.reseller import ReceiverState, create_reseller_receiver

pytestmark = pytest.mark.integration

BODY = (
    b'{"event_type":"sms.received","message_id":"sms.received_00ff","data":{"body":"code 123456"}}'
)
LOOPBACK = WebhookSettings(allow_http=True, allow_private=True, timeout_s=0.5)


@dataclass
class Reseller:
    base: str
    state: ReceiverState

    def endpoint(self, endpoint_id: str, *secrets: str) -> EndpointTarget:
        return EndpointTarget(endpoint_id, f"{self.base}/hooks/{endpoint_id}", secrets)


@pytest.fixture
async def reseller() -> AsyncIterator[Reseller]:
    app, state = create_reseller_receiver()
    async with serve_http(app) as base:
        yield Reseller(base, state)


@pytest.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    async with WebhookSender(LOOPBACK) as client:
        yield client


async def test_signed_delivery_is_verified_by_the_receiver(
    reseller: Reseller, sender: WebhookSender
) -> None:
    secret = generate_secret()
    reseller.state.register("ep-1", secret)

    result = await sender.deliver(reseller.endpoint("ep-1", secret), "sms.received_00ff", BODY)

    assert result.outcome is Outcome.DELIVERED
    assert result.status_code == 200
    assert not result.should_retry
    assert result.latency_ms > 0
    [delivery] = await reseller.state.wait_for(1, endpoint_id="ep-1")
    assert delivery.signature_valid is True
    assert delivery.webhook_id == "sms.received_00ff"
    assert delivery.payload["data"] == {"body": "code 123456"}
    assert abs(int(delivery.timestamp or 0) - time.time()) < 5


async def test_given_timestamp_is_the_one_signed(reseller: Reseller, sender: WebhookSender) -> None:
    secret = generate_secret()
    reseller.state.register("ep-ts", secret)
    now = int(time.time()) - 60

    result = await sender.deliver(reseller.endpoint("ep-ts", secret), "m-ts", BODY, timestamp=now)

    assert result.outcome is Outcome.DELIVERED
    assert reseller.state.received("ep-ts")[0].timestamp == str(now)


async def test_rotation_headers_are_accepted_by_old_and_new_secret_holders(
    reseller: Reseller, sender: WebhookSender
) -> None:
    old, new = generate_secret(), generate_secret()
    reseller.state.register("still-old", old)
    reseller.state.register("already-new", new)

    results = [
        await sender.deliver(reseller.endpoint(endpoint_id, new, old), f"m-{endpoint_id}", BODY)
        for endpoint_id in ("still-old", "already-new")
    ]

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert all(d.signature_valid for d in reseller.state.received())


async def test_wrong_secret_is_answered_401_and_reported_rejected(
    reseller: Reseller, sender: WebhookSender
) -> None:
    reseller.state.register("ep-2", generate_secret())

    result = await sender.deliver(reseller.endpoint("ep-2", generate_secret()), "m-2", BODY)

    assert (result.outcome, result.status_code) == (Outcome.REJECTED, 401)
    assert result.should_retry  # 4xx other than 410 are retried on the normal schedule
    assert reseller.state.received("ep-2")[0].signature_valid is False
    assert reseller.state.ids("ep-2") == []


async def test_bad_signature_check_mode_is_rejected_with_the_answer_in_the_error(
    reseller: Reseller, sender: WebhookSender
) -> None:
    reseller.state.set_mode("ep-3", "bad_signature_check")

    result = await sender.deliver(reseller.endpoint("ep-3", generate_secret()), "m-3", BODY)

    assert (result.outcome, result.status_code) == (Outcome.REJECTED, 401)
    assert result.error is not None
    assert result.error.startswith("HTTP 401")


async def test_410_means_gone_and_no_retry(reseller: Reseller, sender: WebhookSender) -> None:
    reseller.state.set_mode("ep-4", "gone_410")

    result = await sender.deliver(reseller.endpoint("ep-4", generate_secret()), "m-4", BODY)

    assert (result.outcome, result.status_code) == (Outcome.GONE, 410)
    assert not result.should_retry


async def test_500_is_retryable_and_500_then_ok_recovers(
    reseller: Reseller, sender: WebhookSender
) -> None:
    secret = generate_secret()
    reseller.state.set_mode("ep-5", "fail_500")
    reseller.state.set_mode("ep-6", "500_then_ok", failures=1)

    down = await sender.deliver(reseller.endpoint("ep-5", secret), "m-5", BODY)
    first = await sender.deliver(reseller.endpoint("ep-6", secret), "m-6", BODY)
    second = await sender.deliver(reseller.endpoint("ep-6", secret), "m-6", BODY)

    assert (down.outcome, down.status_code) == (Outcome.RETRYABLE, 500)
    assert down.should_retry
    assert (first.outcome, second.outcome) == (Outcome.RETRYABLE, Outcome.DELIVERED)
    assert reseller.state.ids("ep-6") == ["m-6"]


async def test_hanging_endpoint_times_out_within_the_configured_timeout(
    reseller: Reseller, sender: WebhookSender
) -> None:
    reseller.state.set_mode("ep-hang", "hang")

    started = time.monotonic()
    result = await sender.deliver(reseller.endpoint("ep-hang", generate_secret()), "m-7", BODY)
    elapsed = time.monotonic() - started

    assert result.outcome is Outcome.RETRYABLE
    assert result.status_code is None
    assert result.error == "timeout after 0.5s"
    assert 0.45 <= elapsed < 1.0


async def test_hanging_endpoint_does_not_delay_a_healthy_one(reseller: Reseller) -> None:
    # 20 global slots: without the per-endpoint bound (16) the 20 hanging deliveries would hold
    # all of them and the healthy ones would wait out the timeout (checked: p99 1.5 s)
    settings = WebhookSettings(
        allow_http=True,
        allow_private=True,
        timeout_s=1.5,
        concurrency=20,
        per_endpoint_concurrency=16,
    )
    secret = generate_secret()
    reseller.state.register("healthy", secret)
    reseller.state.set_mode("stuck", "hang")
    healthy, stuck = reseller.endpoint("healthy", secret), reseller.endpoint("stuck", secret)

    async def timed(target: EndpointTarget, n: int) -> tuple[AttemptResult, float]:
        started = time.monotonic()
        result = await client.deliver(target, f"m-{target.endpoint_id}-{n}", BODY)
        return result, time.monotonic() - started

    async with WebhookSender(settings) as client:
        stuck_tasks = [asyncio.create_task(timed(stuck, n)) for n in range(20)]
        await asyncio.sleep(0.05)  # the hanging requests are in flight first
        healthy_runs = await asyncio.gather(*(timed(healthy, n) for n in range(200)))
        stuck_runs = await asyncio.gather(*stuck_tasks)

    assert all(r.outcome is Outcome.DELIVERED for r, _ in healthy_runs)
    p99 = statistics.quantiles([s for _, s in healthy_runs], n=100)[98]
    assert p99 < 1.0
    assert all(r.outcome is Outcome.RETRYABLE for r, _ in stuck_runs)
    assert len(reseller.state.ids("healthy")) == 200


def _loopback_alias() -> str | None:
    """A name /etc/hosts maps to loopback that URL validation cannot see through."""
    hosts = Path("/etc/hosts")
    for line in hosts.read_text().splitlines() if hosts.exists() else []:
        fields = line.split("#", 1)[0].split()
        if fields and fields[0].startswith("127."):
            for name in fields[1:]:
                if "localhost" not in name.lower():
                    return name
    return None


async def test_private_target_is_blocked_at_send_time(reseller: Reseller) -> None:
    strict = WebhookSettings(allow_http=True, allow_private=False, timeout_s=0.5)
    port = reseller.base.rsplit(":", 1)[1]
    urls = [f"http://localhost:{port}/hooks/a", f"http://127.0.0.1:{port}/hooks/b"]
    alias = _loopback_alias()
    if alias:
        # passes registration (only the text is checked), resolves to 127.0.0.1 when sending
        url = f"http://{alias}:{port}/hooks/c"
        assert validate_endpoint_url(url, allow_http=True, allow_private=False) == url
        urls.append(url)

    async with WebhookSender(strict) as sender:
        results = [
            await sender.deliver(EndpointTarget(f"ep-{i}", url, (generate_secret(),)), "m", BODY)
            for i, url in enumerate(urls)
        ]

    assert [r.outcome for r in results] == [Outcome.BLOCKED] * len(urls)
    assert all(r.status_code is None and not r.should_retry for r in results)
    assert reseller.state.received() == []


async def test_connection_refused_is_retryable(sender: WebhookSender) -> None:
    target = EndpointTarget("ep-down", f"http://127.0.0.1:{free_port()}/hooks/x", ("whsec_AAAA",))

    result = await sender.deliver(target, "m-8", BODY)

    assert result.outcome is Outcome.RETRYABLE
    assert result.error is not None
    assert "Connect" in result.error


async def test_secrets_stay_out_of_reprs_and_errors(sender: WebhookSender) -> None:
    secret = generate_secret()
    target = EndpointTarget("ep-r", f"http://127.0.0.1:{free_port()}/hooks/x", (secret,))

    result = await sender.deliver(target, "m-9", BODY)

    for text in (repr(target), repr(result), result.error or ""):
        assert secret not in text
        assert secret.removeprefix("whsec_") not in text


async def test_receiver_lists_what_it_recorded(reseller: Reseller, sender: WebhookSender) -> None:
    secret = generate_secret()
    reseller.state.register("ep-list", secret)
    await sender.deliver(reseller.endpoint("ep-list", secret), "m-list", BODY)

    async with httpx.AsyncClient() as client:
        listed = (await client.get(f"{reseller.base}/hooks/ep-list")).json()

    assert [(d["webhook_id"], d["signature_valid"], d["status_code"]) for d in listed] == [
        ("m-list", True, 200)
    ]
    assert listed[0]["payload"]["event_type"] == "sms.received"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (301, Outcome.REJECTED),  # redirects are not followed (spec: update the URL instead)
        (400, Outcome.REJECTED),
        (404, Outcome.REJECTED),
        (408, Outcome.RETRYABLE),
        (410, Outcome.GONE),
        (429, Outcome.RETRYABLE),
        (502, Outcome.RETRYABLE),
    ],
)
def test_status_classification(status: int, outcome: Outcome) -> None:
    assert classify(status) is outcome


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Wed, 04 Feb 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


async def _answering(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI receiver answering 200 with the body its path asks for: ``/small`` (a length
    given), ``/large`` (1 MiB, a length given), ``/streamed`` (chunked, no length)."""
    if scope["type"] != "http":  # lifespan: nothing to set up
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        return
    path = scope["path"]
    if path == "/streamed":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"thanks, ", b"got it"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b"thanks, got it" if path == "/small" else b"x" * (1024 * 1024)
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": length})
    await send({"type": "http.response.body", "body": body})


async def test_answers_are_read_whatever_their_framing_and_size(sender: WebhookSender) -> None:
    async with serve_http(_answering) as base:
        results = {
            path: await sender.deliver(
                EndpointTarget("ep-a", f"{base}/{path}", (generate_secret(),)), "m-a", BODY
            )
            for path in ("small", "streamed", "large", "small")
        }

    assert {path: r.outcome for path, r in results.items()} == dict.fromkeys(
        ("small", "streamed", "large"), Outcome.DELIVERED
    )
    assert results["small"].answer == results["streamed"].answer == "thanks, got it"
    assert results["large"].answer == "x" * ERROR_TEXT_BYTES
