"""Webhook delivery throughput: `WebhookSender` and the transports it was chosen from.

The receiver runs in a subprocess (a bare aiohttp app answering ``200 ok``), so sender and
receiver do not share one event loop or one core: on a 2-core machine that is the closest local
stand-in for resellers on other machines. It verifies every 100th request with the public
``standardwebhooks`` library and reports counts, so a fast but wrongly signed run fails.

Every run signs and sends the same ~340-byte ``sms.received`` body with the same number in
flight (``IN_FLIGHT`` worker tasks), keep-alive pools sized to match, on the default asyncio
loop, over plain HTTP on loopback (TLS to real resellers adds CPU per request).

    .venv/bin/python -m bench.bench_webhooks
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import httpx
from aiohttp import web
from httpx_aiohttp import AiohttpTransport

from infra.settings import WebhookSettings
from infra.webhook_sender import EndpointTarget, Outcome, WebhookSender
from infra.webhook_signing import generate_secret, headers_for

IN_FLIGHT = 64
ENDPOINTS = 8
SENDER_DELIVERIES = 20_000
TRANSPORT_DELIVERIES = {"httpx default": 3_000, "httpx + httpx-aiohttp": 10_000, "aiohttp": 20_000}
SAMPLE_EVERY = 100
# the receiver child imports this module too: it must see the parent's secret
SECRET = os.environ.get("BENCH_WEBHOOK_SECRET") or generate_secret()
TARGET = 2_000

Post = Callable[[str, bytes, dict[str, str]], Awaitable[int]]
Row = dict[str, object]


def _body(n: int) -> bytes:
    event = {
        "event_type": "sms.received",
        "message_id": f"sms.received_{n:016x}",
        "created_at": "2026-02-04T12:00:00Z",
        "data": {
            "to": "+12345678901",
            "from": "+10987654321",
            "body": "Your code is 123456",
            "received_at": "2026-02-04T12:00:00Z",
            "sim_id": 123,
            "iccid": "8901260000000000001",
            "number": "+12345678901",
            "message": "Your code is 123456",
            "port": "1.01",
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


# --- the receiver (runs in the child process) -------------------------------------------------


def _serve(port: int) -> None:
    from standardwebhooks.webhooks import Webhook

    verifier = Webhook(SECRET)
    stats = {"received": 0, "sampled": 0, "valid": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        stats["received"] += 1
        if stats["received"] % SAMPLE_EVERY == 0:
            stats["sampled"] += 1
            with contextlib.suppress(Exception):
                verifier.verify(body, dict(request.headers), json_parse=False)
                stats["valid"] += 1
        return web.Response(status=200, text="ok")

    async def report(_request: web.Request) -> web.Response:
        return web.json_response(stats)

    async def reset(_request: web.Request) -> web.Response:
        stats.update(received=0, sampled=0, valid=0)
        return web.Response(status=204)

    app = web.Application()
    app.add_routes(
        [web.post("/hooks/{endpoint}", hook), web.get("/stats", report), web.post("/reset", reset)]
    )
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


@contextlib.asynccontextmanager
async def receiver_process() -> AsyncIterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "BENCH_WEBHOOK_SECRET": SECRET}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bench_webhooks", "--receiver", str(port), env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await _until_up(base)
        yield base
    finally:
        child.terminate()
        await child.wait()


async def _until_up(base: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                await client.get(f"{base}/stats")
                return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"bench receiver at {base} did not start")


async def _stats(base: str, *, reset: bool = False) -> dict[str, int]:
    async with httpx.AsyncClient() as client:
        if reset:
            await client.post(f"{base}/reset")
            return {}
        stats: dict[str, int] = (await client.get(f"{base}/stats")).json()
        return stats


# --- the runs ---------------------------------------------------------------------------------


async def _drive(
    total: int, post_one: Callable[[int], Awaitable[float]]
) -> tuple[float, list[float]]:
    """``IN_FLIGHT`` workers share ``total`` posts; returns (deliveries/s, latencies ms)."""
    counter = iter(range(total))
    latencies: list[float] = []

    async def worker() -> None:
        latencies.extend([await post_one(n) for n in counter])

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(IN_FLIGHT):
            group.create_task(worker())
    return total / (time.perf_counter() - started), latencies


def _signed(n: int) -> tuple[str, bytes, dict[str, str]]:
    body = _body(n)
    msg_id = f"sms.received_{n:016x}"
    return msg_id, body, headers_for([SECRET], msg_id, int(time.time()), body)


async def _transport_run(name: str, base: str) -> float:
    total = TRANSPORT_DELIVERIES[name]
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    url = f"{base}/hooks/ep-0"

    if name == "aiohttp":
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post_aiohttp(n: int) -> float:
                _, body, headers = _signed(n)
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    _expect(response.status == 200, response.status)
                return (time.perf_counter() - t0) * 1000

            rate, _ = await _drive(total, post_aiohttp)
            return rate

    transport = AiohttpTransport(limits=limits) if name == "httpx + httpx-aiohttp" else None
    async with httpx.AsyncClient(limits=limits, transport=transport) as client:

        async def post_httpx(n: int) -> float:
            _, body, headers = _signed(n)
            t0 = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            _expect(response.status_code == 200, response.status_code)
            return (time.perf_counter() - t0) * 1000

        rate, _ = await _drive(total, post_httpx)
        return rate


async def _sender_run(base: str) -> tuple[float, list[float]]:
    settings = WebhookSettings(allow_http=True, allow_private=True)
    targets = [
        EndpointTarget(f"ep-{i}", f"{base}/hooks/ep-{i}", (SECRET,)) for i in range(ENDPOINTS)
    ]
    async with WebhookSender(settings) as sender:

        async def deliver(n: int) -> float:
            msg_id = f"sms.received_{n:016x}"
            result = await sender.deliver(targets[n % ENDPOINTS], msg_id, _body(n))
            _expect(result.outcome is Outcome.DELIVERED, result)
            return result.latency_ms

        await deliver(-1)  # warm the pool's first connection outside the clock
        return await _drive(SENDER_DELIVERIES, deliver)


def _expect(ok: bool, got: object) -> None:
    if not ok:
        raise RuntimeError(f"unexpected answer: {got!r}")


def _checked(stats: dict[str, int], expected: int) -> None:
    if stats["received"] < expected or stats["valid"] != stats["sampled"]:
        raise RuntimeError(f"receiver saw {stats}, expected {expected} valid deliveries")


def _row(benchmark: str, value: float, unit: str, target: str = "") -> Row:
    return {"benchmark": benchmark, "value": value, "unit": unit, "target": target}


async def run() -> list[Row]:
    rows: list[Row] = []
    async with receiver_process() as base:
        rate, latencies = await _sender_run(base)
        _checked(await _stats(base), SENDER_DELIVERIES)
        cuts = statistics.quantiles(latencies, n=100)
        rows += [
            _row(
                "webhook deliveries/s (WebhookSender)", round(rate), "deliveries/s", f">= {TARGET}"
            ),
            _row(f"delivery latency p50 ({IN_FLIGHT} in flight)", round(cuts[49], 1), "ms"),
            _row(f"delivery latency p99 ({IN_FLIGHT} in flight)", round(cuts[98], 1), "ms"),
        ]
        for name, total in TRANSPORT_DELIVERIES.items():
            await _stats(base, reset=True)
            rate = await _transport_run(name, base)
            _checked(await _stats(base), total)
            rows.append(_row(f"transport: {name} ({total} POSTs)", round(rate), "POSTs/s"))
    return rows


def _print_table(rows: list[Row]) -> None:
    width = max(len(str(row["benchmark"])) for row in rows)
    for row in rows:
        print(f"{row['benchmark']:<{width}}  {row['value']:>8} {row['unit']:<13} {row['target']}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--receiver":
        _serve(int(sys.argv[2]))
    else:
        _print_table(asyncio.run(run()))
