"""Webhook delivery cost: the consumer's CPU per delivery against a bare aiohttp POST, then
`WebhookSender` and the transports it was chosen from.

The headline is a ratio measured in one run, so it means the same on a fast or a slow machine:
CPU µs the webhook consumer spends per delivery while catching up a backlog of ``sms.received``
(Kafka batch → claims in Postgres → signed POST → claim finished and delivery event produced),
counted from the first tenth delivered (its start-up is a fixed cost, shown beside), over CPU
µs of a bare aiohttp POST of a body of the same size to the same receiver, with as many in
flight as the consumer allows itself against those endpoints. The bare POSTs run just before
and just after the catch-up; their mean is the reference. Both under the garbage collector's
setting of a running ``simfleet`` (``infra/gc_tuning.py``).

The receiver runs in a subprocess (``bench/webhook_receiver.py``: a bare aiohttp app), so
sender and receiver do not share one event loop or one core: on a 2-core machine that is the
closest local stand-in for resellers on other machines. It verifies every 100th request with the public
``standardwebhooks`` library and reports counts, so a fast but wrongly signed run fails.

The consumer and the bare POSTs both run on the loop ``simfleet`` runs its services on
(``infra.event_loop``: uvloop), in a thread of their own while the harness's loop only waits;
the transport comparison below them stays on the harness's loop. Every run signs and sends the
same ~340-byte ``sms.received`` body with the same number in flight (``IN_FLIGHT`` worker
tasks), keep-alive pools sized to match, over plain HTTP on loopback (TLS to real resellers adds
CPU per request).

    .venv/bin/python -m bench.bench_webhooks
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import httpx
from cryptography.fernet import Fernet
from httpx_aiohttp import AiohttpTransport
from pyreqwest.client import ClientBuilder

from bench.support import bench_settings, dsn_of
from consumers.webhooks.consumer import build_router, webhook_runtime
from consumers.webhooks.rules import SimFacts, webhook_body
from events.sms import SmsReceived
from infra import event_loop
from infra.bus import Bus
from infra.clock import SystemClock
from infra.gc_tuning import tuned_for_service
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import Settings, WebhookSettings
from infra.webhook_sender import EndpointTarget, Outcome, WebhookSender
from infra.webhook_signing import SecretBox, generate_secret, headers_for

IN_FLIGHT = 64
ENDPOINTS = 8
SENDER_DELIVERIES = 20_000
TRANSPORT_DELIVERIES = {
    "httpx default": 3_000,
    "httpx + httpx-aiohttp": 10_000,
    "aiohttp": 20_000,
    "pyreqwest (WebhookSender's)": 20_000,
}
# the receiver child imports this module too: it must see the parent's secret
SECRET = os.environ.get("BENCH_WEBHOOK_SECRET") or generate_secret()
TARGET = 2_000
BACKLOG = 20_000  # sms.received the consumer catches up on
CATCH_UPS = 3  # each a backlog of its own; the median is the figure (one alone varied ±15 %)
BARE_POSTS = 20_000  # per reference run (one before the catch-up, one after)
RATIO_TARGET = 2.0

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


# --- the receiver (its own process: bench/webhook_receiver.py) --------------------------------


@contextlib.asynccontextmanager
async def receiver_process() -> AsyncIterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "BENCH_WEBHOOK_SECRET": SECRET}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.webhook_receiver", str(port), env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await _until_up(base)
        yield base
    finally:
        child.terminate()
        await child.wait()


async def _until_up(base: str) -> None:
    # a minute: on a machine loaded many times over, even a small Python process takes seconds
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
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

    if name.startswith("pyreqwest"):
        async with ClientBuilder().build() as reqwest:

            async def post_pyreqwest(n: int) -> float:
                _, body, headers = _signed(n)
                t0 = time.perf_counter()
                request = reqwest.post(url).headers(headers).body_bytes(body).build()
                response = await request.send()
                _expect(response.status == 200, response.status)
                return (time.perf_counter() - t0) * 1000

            rate, _ = await _drive(total, post_pyreqwest)
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


# --- the consumer against a bare POST (same receiver, body size and concurrency) -------------


@dataclass(frozen=True)
class CatchUp:
    cpu_us: float  # CPU of this process per delivery once running (start-up excluded)
    with_start_us: float  # the same from the consumer's start: its start-up spread over all
    rate: float  # deliveries/s, first claim to last delivery (wall clock: shared cores)


def broker_of(settings: Settings) -> str:
    """tansu | kafka. The embedded Tansu refuses InitProducerId, so the bench gives it no
    idempotent producer; Apache Kafka (embedded or configured) always has one."""
    return "kafka" if settings.kafka.kafka_idempotence else "tansu"


def consumer_in_flight(settings: WebhookSettings) -> int:
    """How many POSTs the consumer keeps in flight against ``ENDPOINTS`` endpoints."""
    return min(settings.concurrency, ENDPOINTS * settings.per_endpoint_concurrency)


async def seed_resellers(pool: asyncpg.Pool, base: str, box: SecretBox, tag: str) -> list[str]:
    """Resellers with one endpoint and one SIM each, written as the projections would."""
    iccids = [f"89{uuid.uuid4().int % 10**17:017d}" for _ in range(ENDPOINTS)]
    now = datetime.now(UTC)
    for i, iccid in enumerate(iccids):
        reseller, endpoint = f"{tag}-r{i}", f"{tag}-ep{i}"
        await pool.execute("INSERT INTO resellers VALUES ($1, $1, $2)", reseller, now)
        await pool.execute(
            "INSERT INTO reseller_webhooks (endpoint_id, reseller_id, url, sealed_secret, "
            "created_at) VALUES ($1, $2, $3, $4, $5)",
            endpoint,
            reseller,
            f"{base}/hooks/{endpoint}",
            box.seal(SECRET),
            now,
        )
        await pool.execute("INSERT INTO reseller_sims VALUES ($1, $2, $3)", iccid, reseller, now)
    return iccids


def sms_for(iccids: list[str], n: int, tag: str) -> SmsReceived:
    now = datetime.now(UTC)
    return SmsReceived.create(
        producer="bench",
        time=now,
        gateway_id="gw-bench",
        port=f"{n % 32 + 1}.01",
        sender="+15551230000",
        to=f"+1555{n % 10_000_000:07d}",
        iccid=iccids[n % len(iccids)],
        body=f"{tag} code {n:06d}",
        received_at=now,
    )


@contextlib.asynccontextmanager
async def webhook_consumer(
    settings: Settings, pool: asyncpg.Pool, box: SecretBox
) -> AsyncIterator[None]:
    """The webhook consumer as ``simfleet run`` wires it, in this process."""
    bootstrap = settings.kafka.kafka_bootstrap_servers or ""
    broker = build_broker(settings.kafka, bootstrap)
    broker.include_router(build_router(settings))
    failed = asyncio.Event()
    async with webhook_runtime(
        settings, bootstrap=bootstrap, pool=pool, clock=SystemClock(), box=box, stop=failed
    ) as context:
        for name, value in context.items():
            broker.context.set_global(name, value)
        await broker.start()
        try:
            yield
        finally:
            await broker.stop()
    if failed.is_set():
        raise RuntimeError("a webhook dispatcher loop failed; see the log")


async def delivered_count(pool: asyncpg.Pool, tag: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM webhook_claims WHERE reseller_id LIKE $1 AND state = 'delivered'",
        f"{tag}-%",
    )
    return count


async def _until_delivered(pool: asyncpg.Pool, tag: str, n: int, base: str) -> tuple[float, int]:
    """Waits until ``n`` are delivered (their claims marked so); returns this process's CPU
    seconds and the POSTs the receiver had at the first look past a tenth of them (where
    start-up is over). Counted at the receiver: the claims are marked in groups, behind the
    POSTs, and a count of them could start the clock late (work done, not yet counted)."""
    deadline = time.monotonic() + 300
    running: tuple[float, int] | None = None
    # one client for every look (not ``_stats``'s client per call): its set-up would be CPU
    # of this process, which is what is measured
    async with httpx.AsyncClient() as receiver:
        while (done := await delivered_count(pool, tag)) < n:
            if running is None:
                posted = int((await receiver.get(f"{base}/stats")).json()["received"])
                if posted >= n // 10:
                    running = (time.process_time(), posted)
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {n} delivered")
            await asyncio.sleep(0.25)
    if running is None:  # all of them within the first look
        raise RuntimeError("the catch-up ended before a steady state could be measured")
    return running


async def _catch_up(settings: Settings, base: str) -> CatchUp:
    """``BACKLOG`` SMS on ``sms.inbound`` first, then the consumer started until all delivered."""
    tag = f"bench{uuid.uuid4().hex[:8]}"
    box = SecretBox([Fernet.generate_key()])
    pool = await create_pool(dsn_of(settings), min_size=4, max_size=16)
    try:
        iccids = await seed_resellers(pool, base, box, tag)
        publisher = build_broker(settings.kafka, settings.kafka.kafka_bootstrap_servers or "")
        await publisher.start()
        try:
            bus = Bus(publisher, settings.kafka.topic_prefix)
            for start in range(0, BACKLOG, 1000):
                await bus.emit_many([sms_for(iccids, n, tag) for n in range(start, start + 1000)])
        finally:
            await publisher.stop()
        cpu_before = time.process_time()
        async with webhook_consumer(settings, pool, box):
            with _profiled("webhook-consumer"):
                cpu_running, done_running = await _until_delivered(pool, tag, BACKLOG, base)
            cpu_end = time.process_time()
        span = await pool.fetchrow(
            "SELECT min(created_at) AS first, max(delivered_at) AS last FROM webhook_claims "
            "WHERE reseller_id LIKE $1",
            f"{tag}-%",
        )
    finally:
        await pool.close()
    seconds = (span["last"] - span["first"]).total_seconds()
    return CatchUp(
        cpu_us=(cpu_end - cpu_running) / (BACKLOG - done_running) * 1e6,
        with_start_us=(cpu_end - cpu_before) / BACKLOG * 1e6,
        rate=BACKLOG / seconds,
    )


async def _bare_posts(base: str, body: bytes, in_flight: int) -> float:
    """CPU µs of this process per plain aiohttp POST: the body and headers made once, no
    signing, no database, no events — what any sender pays for the HTTP exchange alone."""
    headers = headers_for([SECRET], "msg_bare", int(time.time()), body)
    urls = [f"{base}/hooks/bare-{i}" for i in range(ENDPOINTS)]
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(n: int) -> None:
            async with session.post(urls[n % ENDPOINTS], data=body, headers=headers) as answer:
                await answer.read()
                _expect(answer.status == 200, answer.status)

        counter = iter(range(BARE_POSTS))

        async def worker() -> None:
            for n in counter:
                await post(n)

        await asyncio.gather(*(post(-1 - i) for i in range(in_flight)))  # the pool, warmed
        cpu_before = time.process_time()
        with _profiled("bare-post"):
            async with asyncio.TaskGroup() as group:
                for _ in range(in_flight):
                    group.create_task(worker())
        return (time.process_time() - cpu_before) / BARE_POSTS * 1e6


@contextlib.contextmanager
def _profiled(name: str) -> Iterator[None]:
    """With ``BENCH_PYSPY=<dir>``: py-spy samples this process for the block (collapsed stacks
    in ``<dir>/<name>.txt``; py-spy needs root or ptrace rights)."""
    out_dir = os.environ.get("BENCH_PYSPY")
    if not out_dir:
        yield
        return
    py_spy = Path(sys.executable).parent / "py-spy"
    output = Path(out_dir) / f"{name}.txt"
    output.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(py_spy), "record", "--pid", str(os.getpid()), "--rate", "250"]
    cmd += ["--format", "raw", "--output", str(output), "--nonblocking"]
    sampler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        sampler.send_signal(signal.SIGINT)
        sampler.wait(30)


async def _consumer_against_bare(settings: Settings, base: str) -> list[Row]:
    """Both sides on the service loop, in a thread of their own: the harness's loop (which may
    be another kind) only waits for it, so its CPU per POST is nil."""

    async def measured() -> list[Row]:
        # the collector as `simfleet` sets it once started, for the bare POSTs as the consumer
        with tuned_for_service():
            return await _consumer_against_bare_tuned(settings, base)

    return await asyncio.to_thread(event_loop.run, measured())


async def _consumer_against_bare_tuned(settings: Settings, base: str) -> list[Row]:
    in_flight = consumer_in_flight(settings.webhooks)
    # the very body the consumer makes of such an SMS (no `sims` row: sim_id null)
    sample = sms_for([f"89{0:017d}"], 0, f"bench{0:08x}")
    body = webhook_body(sample, SimFacts()).encode()

    async def bare_run() -> float:
        await _stats(base, reset=True)
        cpu_us = await _bare_posts(base, body, in_flight)
        _checked(await _stats(base), BARE_POSTS)
        return cpu_us

    before = await bare_run()
    catch_ups: list[CatchUp] = []
    for _ in range(CATCH_UPS):
        await _stats(base, reset=True)
        catch_ups.append(await _catch_up(settings, base))
        _checked(await _stats(base), BACKLOG)
    catch_up = sorted(catch_ups, key=lambda c: c.cpu_us)[CATCH_UPS // 2]
    bare = [before, await bare_run()]
    reference = statistics.fmean(bare)
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    ratio = catch_up.cpu_us / reference
    return [
        {
            **_row("bare aiohttp POST CPU (reference)", round(reference, 1), "µs/POST"),
            "detail": f"before {bare[0]:.1f}, after {bare[1]:.1f}; {BARE_POSTS} POSTs each, "
            f"{len(body)}-byte body, {in_flight} in flight, receiver in a subprocess; both sides "
            f"on the {loop} loop",
        },
        {
            **_row("webhook consumer CPU per delivery (catch-up)", round(catch_up.cpu_us), "µs"),
            "detail": f"median of {CATCH_UPS} catch-ups "
            f"({', '.join(f'{c.cpu_us:.0f}' for c in catch_ups)} µs), each a {BACKLOG} SMS "
            f"backlog to {ENDPOINTS} resellers; from the first tenth delivered to the last "
            f"({catch_up.with_start_us:.0f} µs with the consumer's start-up); "
            f"{catch_up.rate:,.0f} deliveries/s first claim to last delivery (cores shared with "
            "Kafka, Postgres and the receiver)",
        },
        {
            **_row(
                "webhook consumer CPU per delivery / bare POST",
                round(ratio, 2),
                "x",
                f"<= {RATIO_TARGET:g}x",
            ),
            "detail": f"met {'yes' if ratio <= RATIO_TARGET else 'no'}",
        },
    ]


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
    async with bench_settings() as base_settings, receiver_process() as base:
        webhooks = base_settings.webhooks.model_copy(
            update={"allow_http": True, "allow_private": True}
        )
        settings = base_settings.model_copy(update={"webhooks": webhooks})
        rows += await _consumer_against_bare(settings, base)
        labels = {"broker": broker_of(settings), "processes": 1}
        await _stats(base, reset=True)
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
    # the consumer and the senders run in this one process (the receiver in its own)
    return [{**row, **labels} for row in rows]


def _print_table(rows: list[Row]) -> None:
    width = max(len(str(row["benchmark"])) for row in rows)
    for row in rows:
        print(f"{row['benchmark']:<{width}}  {row['value']:>8} {row['unit']:<13} {row['target']}")


if __name__ == "__main__":
    _print_table(asyncio.run(run()))
