"""Webhook deliveries end to end: sms.received on Kafka → the webhook consumer (batch intake,
claims in Postgres, delivery tasks, WebhookSender, delivery events back to Kafka) → a receiver
in a subprocess (``bench_webhooks``' aiohttp app, which verifies every 100th signature).

Three figures: catch-up throughput over a backlog (first claim → last delivery, both recorded
in ``webhook_claims``), latency under a steady live load (gateway push → delivered), and the
sustainable maximum: rates stepped up (500, 1000, 1500 … SMS/s, a few seconds each) until
p99 passes 250 ms or SMS are left behind.

    .venv/bin/python -m bench.bench_delivery
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
from cryptography.fernet import Fernet
from httpx_aiohttp import AiohttpTransport
from pydantic import SecretStr

from bench.bench_webhooks import SECRET, _stats, receiver_process
from bench.support import bench_settings, dsn_of
from consumers.webhooks import build_router, webhook_runtime
from events.sms import SmsReceived
from infra.clock import SystemClock
from infra.http import serve_http
from infra.kafka import Bus, build_broker
from infra.postgres import create_pool
from infra.settings import Settings
from infra.webhook_signing import SecretBox
from producers.gateway_bridge import create_bridge_app

BACKLOG = 20_000
LIVE = 1000
LIVE_RATE = 500  # SMS/s, pushed through the gateway bridge
GATEWAY_SECRET = "bench-gateway-secret"  # noqa: S105 (a bench's own throwaway)
RESELLERS = 8
TARGET = 2_000
P99_TARGET_MS = 250
STEP_RATES = (500, 750, 1000, 1250, 1500, 1750, 2000, 2500, 3000, 4000, 5000)  # SMS/s
STEP_S = 4  # seconds of pushing per step
DRAIN_S = 10  # a step's SMS not delivered this long after its last push are left behind

Row = dict[str, object]


async def seed_resellers(pool: asyncpg.Pool, base: str, box: SecretBox, tag: str) -> list[str]:
    """Resellers with one endpoint and one SIM each, written as the projections would."""
    iccids = [f"89{uuid.uuid4().int % 10**17:017d}" for _ in range(RESELLERS)]
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


def _sms(iccids: list[str], n: int, tag: str) -> SmsReceived:
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
async def _consumer(settings: Settings, pool: asyncpg.Pool, box: SecretBox) -> AsyncIterator[None]:
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


async def _delivered(pool: asyncpg.Pool, tag: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM webhook_claims WHERE reseller_id LIKE $1 AND state = 'delivered'",
        f"{tag}-%",
    )
    return count


async def _until_delivered(pool: asyncpg.Pool, tag: str, n: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while await _delivered(pool, tag) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {await _delivered(pool, tag)} of {n} delivered")
        await asyncio.sleep(0.2)


async def run() -> list[Row]:
    async with bench_settings() as base_settings:
        webhooks = base_settings.webhooks.model_copy(
            update={"allow_http": True, "allow_private": True}
        )
        settings = base_settings.model_copy(update={"webhooks": webhooks})
        tag = f"bench{uuid.uuid4().hex[:8]}"
        pool = await create_pool(dsn_of(settings), min_size=4, max_size=16)
        publisher = build_broker(settings.kafka, settings.kafka.kafka_bootstrap_servers or "")
        await publisher.start()
        box = SecretBox([Fernet.generate_key()])
        try:
            async with receiver_process() as receiver:
                iccids = await seed_resellers(pool, receiver, box, tag)
                bus = Bus(publisher, settings.kafka.topic_prefix)
                for start in range(0, BACKLOG, 1000):
                    await bus.emit_many([_sms(iccids, n, tag) for n in range(start, start + 1000)])
                cpu_before = time.process_time()
                async with _consumer(settings, pool, box):
                    await _until_delivered(pool, tag, BACKLOG, 120)
                    cpu_s = time.process_time() - cpu_before
                    span = await pool.fetchrow(
                        "SELECT min(created_at) AS first, max(delivered_at) AS last "
                        "FROM webhook_claims WHERE reseller_id LIKE $1",
                        f"{tag}-%",
                    )
                    async with _bridge(settings, bus, iccids, tag) as push:
                        live = await push(LIVE_RATE, LIVE, BACKLOG)
                        if live.errors:
                            raise RuntimeError(f"{live.errors} pushes to the bridge failed")
                        pushed = live.pushed
                        await _until_delivered(pool, tag, BACKLOG + LIVE, 60)
                        stats = await _stats(receiver)
                        latencies = await _latencies(pool, pushed)
                        steps = await _step_search(pool, push, BACKLOG + LIVE)
        finally:
            await publisher.stop()
            await pool.close()
    rate = BACKLOG / (span["last"] - span["first"]).total_seconds()
    if stats["received"] < BACKLOG + LIVE or stats["valid"] != stats["sampled"]:
        raise RuntimeError(f"receiver saw {stats}")
    cuts = statistics.quantiles(latencies, n=100)
    cpu_us = cpu_s / BACKLOG * 1e6
    detail = f"{BACKLOG} SMS backlog, {RESELLERS} resellers, receiver in a subprocess"
    live_detail = (
        f"{LIVE} SMS pushed to the bridge at {LIVE_RATE}/s, bridge and consumer in one process"
    )
    return [
        _row(
            "webhook deliveries/s end to end (catch-up)",
            round(rate),
            "deliveries/s",
            f">= {TARGET}",
            detail,
        ),
        _row(
            "webhook consumer CPU per delivery (catch-up)",
            round(cpu_us),
            "µs",
            "< 500 µs",
            f"≈ {round(1e6 / cpu_us):,}/s on one free core; the rate above shares 2 cores "
            "with Kafka, Postgres, the receiver and whatever else runs",
        ),
        _row(
            "gateway push → webhook received, p50",
            round(cuts[49], 1),
            "ms",
            "",
            live_detail,
        ),
        _row(
            "gateway push → webhook received, p99",
            round(cuts[98], 1),
            "ms",
            "< 250 ms at 500 SMS/s",
            live_detail,
        ),
        _sustainable_row(steps),
    ]


def skyline_push(n: int, tag: str, iccid: str) -> dict[str, object]:
    """SMS number ``n`` as a Skyline gateway's JSON push (with the receiving SIM's ICCID)."""
    text = base64.b64encode(f"{tag} code {n:06d}".encode()).decode()
    row = [0, f"{n % 32 + 1}.01", int(time.time()), "+15551230000", f"555{n % 10_000_000:07d}"]
    return {"type": "recv-sms", "sms_num": 1, "sms": [[*row, text, iccid, ""]]}


@dataclass(frozen=True)
class Pushed:
    rate: float  # SMS/s achieved by the load generator
    pushed: dict[str, datetime]  # SMS id → the moment its push started
    errors: int


Pusher = Callable[[int, int, int], Awaitable[Pushed]]


@contextlib.asynccontextmanager
async def _bridge(
    settings: Settings, bus: Bus, iccids: list[str], tag: str
) -> AsyncIterator[Pusher]:
    """The gateway bridge on a local port and a function pushing ``count`` SMS to it at
    ``rate`` as a Skyline gateway would (JSON push with the ICCID appended), numbered from
    ``first``. Open loop: pushes start on schedule whether or not earlier ones were answered."""
    secrets = settings.secrets.model_copy(update={"gateway_secret": SecretStr(GATEWAY_SECRET)})
    app = create_bridge_app(settings.model_copy(update={"secrets": secrets}), bus, SystemClock())

    async with serve_http(app) as url, httpx.AsyncClient(transport=AiohttpTransport()) as http:

        async def push_one(n: int, pushed: dict[str, datetime]) -> bool:
            started = datetime.now(UTC)
            answer = await http.post(
                f"{url}/sms",
                json=skyline_push(n, tag, iccids[n % len(iccids)]),
                headers={"x-gateway-secret": GATEWAY_SECRET},
            )
            if answer.status_code != httpx.codes.OK:
                return False
            pushed[answer.json()["ids"][0]] = started
            return True

        async def push(rate: int, count: int, first: int) -> Pushed:
            pushed: dict[str, datetime] = {}
            tasks = []
            began = time.perf_counter()
            for i in range(count):
                delay = began + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(push_one(first + i, pushed)))
            achieved = count / (time.perf_counter() - began) if count > 1 else float(rate)
            answered = await asyncio.gather(*tasks, return_exceptions=True)
            return Pushed(achieved, pushed, sum(a is not True for a in answered))

        yield push


@dataclass(frozen=True)
class Step:
    rate: int
    pushed: Pushed
    delivered: int
    p50_ms: float
    p99_ms: float

    @property
    def kept_up(self) -> bool:
        return (
            not self.pushed.errors
            and self.pushed.rate >= 0.95 * self.rate
            and self.delivered == len(self.pushed.pushed)
            and self.p99_ms < P99_TARGET_MS
        )

    def describe(self) -> str:
        left = len(self.pushed.pushed) - self.delivered
        return (
            f"{self.rate}/s: pushed at {self.pushed.rate:,.0f}/s, p50 {self.p50_ms:.0f} ms, "
            f"p99 {self.p99_ms:.0f} ms, {left} left behind, {self.pushed.errors} push errors"
        )


async def _step_search(pool: asyncpg.Pool, push: Pusher, first: int) -> list[Step]:
    """Steps the rate up until a step does not keep up; returns every step tried. Upwards only:
    a step after an overloaded one would measure the overload's aftermath."""
    steps: list[Step] = []
    for rate in STEP_RATES:
        await asyncio.sleep(2)  # each step starts idle
        count = rate * STEP_S
        pushed = await push(rate, count, first)
        first += count
        delivered = await _delivered_within(pool, list(pushed.pushed), DRAIN_S)
        latencies = await _latencies(pool, pushed.pushed)
        cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [math.inf] * 99
        steps.append(Step(rate, pushed, delivered, cuts[49], cuts[98]))
        if not steps[-1].kept_up:
            break
    return steps


async def _delivered_within(pool: asyncpg.Pool, ids: list[str], limit_s: float) -> int:
    deadline = time.monotonic() + limit_s
    while True:
        delivered: int = await pool.fetchval(
            "SELECT count(*) FROM webhook_claims WHERE message_id = ANY($1::text[]) "
            "AND state = 'delivered'",
            ids,
        )
        if delivered == len(ids) or time.monotonic() > deadline:
            return delivered
        await asyncio.sleep(0.2)


def _sustainable_row(steps: list[Step]) -> Row:
    best = max((s for s in steps if s.kept_up), key=lambda s: s.rate, default=None)
    tried = "; ".join(s.describe() for s in steps)
    return {
        "benchmark": "gateway push → webhook received, sustainable maximum",
        "value": best.rate if best else 0,
        "unit": "SMS/s",
        "target": f"reference (p99 < {P99_TARGET_MS} ms, nothing left behind)",
        "detail": (
            f"p50 {best.p50_ms:.0f} ms, p99 {best.p99_ms:.0f} ms; " if best else "no step kept up; "
        )
        + f"{STEP_S} s per step, bridge and consumer in one process; steps: {tried}",
    }


async def _latencies(pool: asyncpg.Pool, pushed: dict[str, datetime]) -> list[float]:
    """Milliseconds from each gateway push to its webhook answered 2xx (the claim rows)."""
    rows = await pool.fetch(
        "SELECT message_id, delivered_at FROM webhook_claims WHERE message_id = ANY($1::text[])",
        list(pushed),
    )
    return [(r["delivered_at"] - pushed[r["message_id"]]).total_seconds() * 1000 for r in rows]


def _row(benchmark: str, value: float, unit: str, target: str, detail: str) -> Row:
    return {
        "benchmark": benchmark,
        "value": value,
        "unit": unit,
        "target": target,
        "detail": detail,
    }


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(asyncio.run(run()))
    sys.exit(0)
