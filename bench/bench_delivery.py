"""Webhook deliveries end to end: sms.received on Kafka → the webhook consumer (batch intake,
claims in Postgres, delivery tasks, WebhookSender, delivery events back to Kafka) → a receiver
in a subprocess (``bench_webhooks``' aiohttp app, which verifies every 100th signature).

Three figures: catch-up throughput over a backlog (first claim → last delivery, both recorded
in ``webhook_claims``), latency under a steady live load (gateway push → delivered; bridge and
consumer in this process), and the sustainable maximum of the whole pipeline as deployed —
``simfleet run`` as one process, then ``simfleet bridge``, ``workers`` and ``projector`` as three
(so that both cores work): rates stepped up as shares of the bare endpoint's pushes/s measured
in the same run (10 %, 15 %, 20 % …, 4 s each) until p99 passes 250 ms or an SMS is not
delivered and projected within 10 s. Each step says where its time went (push → the bridge's
200 → the webhook consumer's claim → the receiver's 2xx, and → projected), and each ladder every
process's CPU per SMS and idle CPU. The load generator is open loop, on a lean HTTP client
(``bench.lean_http``: ~50 µs of CPU a push where aiohttp's client took ~280).

    .venv/bin/python -m bench.bench_delivery               # every figure
    .venv/bin/python -m bench.bench_delivery sustained     # the ladders only
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from cryptography.fernet import Fernet
from httpx_aiohttp import AiohttpTransport
from pydantic import SecretStr

from bench.bench_bridge import CONCURRENCY, Load, combined, measure
from bench.bench_webhooks import (
    _stats,
    delivered_count,
    receiver_process,
    seed_resellers,
    sms_for,
    webhook_consumer,
)
from bench.lean_http import LeanHttp
from bench.processes import (
    GATEWAY_SECRET,
    RESELLERS,
    simfleet_env,
    simfleet_processes,
    skyline_push,
)
from bench.support import (
    STATE_DIR,
    bench_settings,
    child_pids,
    cpu_s,
    dsn_of,
    infrastructure_cpu,
    kafka_bootstrap,
)
from infra.bus import Bus
from infra.clock import SystemClock
from infra.http import serve_http
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import Settings
from infra.webhook_signing import SecretBox
from producers.skyline.bridge import create_bridge_app
from sandbox.helix import create_helix_sandbox
from sandbox.helix_world import HelixWorld

BACKLOG = 20_000
LIVE = 1000
LIVE_RATE = 500  # SMS/s, pushed through the gateway bridge
TARGET = 2_000
P99_TARGET_MS = 250
# the sustained-rate ladder: rates as shares of the bare endpoint's pushes/s in the same run
STEP_SHARES = (0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.60, 0.70, 0.80)
TARGET_SHARE = 0.35
STEP_S = 4  # seconds of pushing per step
IDLE_S = 3.0  # seconds with nothing pushed, before the ladder: each process's idle CPU
DRAIN_S = 10  # a step's SMS not delivered and projected this long after its last push: left behind
BARE_S = 5.0  # seconds of load on the bare endpoint (after bench_bridge's warm-up)
# the pipeline as deployed: everything in one `simfleet run`, or the roles on the hot path as
# processes of their own (the scheduler and the dashboard idle here; bench_memory runs them)
LAYOUTS: dict[str, dict[str, list[str]]] = {
    "one process (simfleet run)": {"run": ["run"]},
    "bridge, workers, projector as 3 processes": {
        "bridge": ["bridge"],
        "workers": ["workers"],
        "projector": ["projector"],
    },
}

Row = dict[str, object]


async def _until_delivered(pool: asyncpg.Pool, tag: str, n: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while await delivered_count(pool, tag) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {await delivered_count(pool, tag)} of {n} delivered")
        await asyncio.sleep(0.2)


async def run() -> list[Row]:
    """Every figure; the in-process ones failing (a busy machine) does not lose the ladders."""
    try:
        rows = await in_process_rows()
    except Exception:
        traceback.print_exc()
        rows = [{"benchmark": "webhook deliveries, in-process figures", "value": "failed"}]
    return rows + await sustained_rows()


async def in_process_rows() -> list[Row]:
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
                    await bus.emit_many(
                        [sms_for(iccids, n, tag) for n in range(start, start + 1000)]
                    )
                async with webhook_consumer(settings, pool, box):
                    await _until_delivered(pool, tag, BACKLOG, 120)
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
        finally:
            await publisher.stop()
            await pool.close()
    rate = BACKLOG / (span["last"] - span["first"]).total_seconds()
    if stats["received"] < BACKLOG + LIVE or stats["valid"] != stats["sampled"]:
        raise RuntimeError(f"receiver saw {stats}")
    cuts = statistics.quantiles(latencies, n=100)
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
    ]


@dataclass(frozen=True)
class Pushed:
    rate: float  # SMS/s achieved by the load generator
    pushed: dict[str, datetime]  # SMS id → the moment its push started
    errors: int
    answered: dict[str, datetime]  # SMS id → the moment the bridge answered 200 (Kafka acked)


Pusher = Callable[[int, int, int], Awaitable[Pushed]]
PushOne = Callable[[int, Pushed], Coroutine[Any, Any, bool]]


def paced(push_one: PushOne) -> Pusher:
    """``count`` pushes from number ``first`` at ``rate`` per second, each started on its
    schedule whether or not earlier ones were answered; ``push_one`` records in ``marks`` when
    what it stored was pushed and answered."""

    async def push(rate: int, count: int, first: int) -> Pushed:
        marks = Pushed(float(rate), {}, 0, {})
        tasks: list[asyncio.Task[bool]] = []
        began = time.perf_counter()
        for i in range(count):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(push_one(first + i, marks)))
        achieved = count / (time.perf_counter() - began) if count > 1 else float(rate)
        done = await asyncio.gather(*tasks, return_exceptions=True)
        errors = sum(d is not True for d in done)
        return Pushed(achieved, marks.pushed, errors, marks.answered)

    return push


@contextlib.asynccontextmanager
async def _bridge(
    settings: Settings, bus: Bus, iccids: list[str], tag: str
) -> AsyncIterator[Pusher]:
    """The gateway bridge on a local port and a function pushing ``count`` SMS to it at
    ``rate`` as a Skyline gateway would (JSON push with the ICCID appended), numbered from
    ``first``. Open loop: pushes start on schedule whether or not earlier ones were answered."""
    secrets = settings.secrets.model_copy(update={"gateway_secret": SecretStr(GATEWAY_SECRET)})
    app = create_bridge_app(settings.model_copy(update={"secrets": secrets}), bus, SystemClock())

    transport = AiohttpTransport()
    async with serve_http(app) as url, httpx.AsyncClient(transport=transport, timeout=30) as http:

        async def push_one(n: int, marks: Pushed) -> bool:
            started = datetime.now(UTC)
            answer = await http.post(
                f"{url}/sms",
                json=skyline_push(n, tag, iccids[n % len(iccids)]),
                headers={"x-gateway-secret": GATEWAY_SECRET},
            )
            if answer.status_code != httpx.codes.OK:
                return False
            sms_id = answer.json()["ids"][0]
            marks.pushed[sms_id], marks.answered[sms_id] = started, datetime.now(UTC)
            return True

        yield paced(push_one)


async def sustained_rows() -> list[Row]:
    """The sustained-rate ladder on each layout, against the bare endpoint's pushes/s measured
    here before and after them (same broker, same machine load). Each ladder starts on topics
    and a database of its own, as the first did: what an earlier ladder left would weigh on the
    next (Tansu answers a fetch by listing every batch its partition ever stored)."""
    world = HelixWorld()
    async with (
        serve_http(create_helix_sandbox(world)) as helix_url,
        receiver_process() as receiver,
    ):
        bare_before = await _bare_endpoint()
        ladders = {}
        for name, commands in LAYOUTS.items():
            async with bench_settings() as settings:
                pool = await create_pool(dsn_of(settings), max_size=4)
                try:
                    ladders[name] = await _ladder(
                        commands,
                        settings=settings,
                        pool=pool,
                        helix_url=helix_url,
                        world=world,
                        receiver=receiver,
                        bare_rate=bare_before.rate,
                    )
                finally:
                    await pool.close()
        # again after the ladders, which take minutes: the reference is both rounds together
        bare_after = await _bare_endpoint()
    bare = combined([bare_before, bare_after])
    return [
        _sustainable_row(
            name,
            len(LAYOUTS[name]),
            ladder,
            bare.rate,
            f"{bare_before.rate:,.0f} before the ladders (their steps' shares), "
            f"{bare_after.rate:,.0f} after",
        )
        for name, ladder in ladders.items()
    ]


async def _bare_endpoint() -> Load:
    """The bare endpoint's pushes/s: it answers without Kafka or Postgres (no topics or
    database made for it)."""
    with kafka_bootstrap() as bootstrap:
        return await measure("bare", bootstrap, "bench-bare.", BARE_S, CONCURRENCY)


@dataclass(frozen=True)
class Ladder:
    steps: list[Step]
    cpu_us: dict[str, float]  # per process: CPU µs per SMS pushed over the whole ladder
    idle_ms: dict[str, float]  # per process: CPU ms per second with nothing pushed

    def describe_cpu(self) -> str:
        per_sms = ", ".join(f"{name} {us:,.0f}" for name, us in self.cpu_us.items())
        idle = ", ".join(f"{name} {ms:.0f}" for name, ms in self.idle_ms.items())
        return f"{per_sms}; idle, CPU ms per s: {idle}"


async def _ladder(
    commands: dict[str, list[str]],
    *,
    settings: Settings,
    pool: asyncpg.Pool,
    helix_url: str,
    world: HelixWorld,
    receiver: str,
    bare_rate: float,
) -> Ladder:
    env = simfleet_env(settings, helix_url, world)
    tag = f"sus{uuid.uuid4().hex[:8]}"
    box = SecretBox.from_setting(env["WEBHOOK_SEALING_KEY"], STATE_DIR)
    iccids = await seed_resellers(pool, receiver, box, tag)
    async with simfleet_processes(commands, env, STATE_DIR / "sustained" / tag) as pids:
        bridge = f"http://127.0.0.1:{env['SIMFLEET_BRIDGE_PORT']}"
        # beside the pipeline: the load generator (this process), the webhook receiver, and the
        # broker and Postgres it runs on
        beside = {"bench": os.getpid(), **_receiver_pid()}
        watched: dict[str, Callable[[], float]] = {
            name: functools.partial(cpu_s, pid) for name, pid in (pids | beside).items()
        } | infrastructure_cpu()
        async with _pusher(bridge, iccids, tag) as push:
            await push(50, 100, 0)  # connections up, every code path warm
            idle = await _idle_cpu_ms(watched, IDLE_S)
            before = {name: used() for name, used in watched.items()}
            with _profiled(pids):
                steps = await _step_search(pool, push, 100, bare_rate)
            pushed = sum(len(step.pushed.pushed) for step in steps)
            cpu = {n: (used() - before[n]) / pushed * 1e6 for n, used in watched.items()}
            return Ladder(steps, cpu, idle)


async def _idle_cpu_ms(gauges: dict[str, Callable[[], float]], seconds: float) -> dict[str, float]:
    """CPU ms per second each process spends with nothing to do (polling, heartbeats): what it
    takes from the cores whatever the rate."""
    await asyncio.sleep(2)  # the warm-up's deliveries done
    before = {name: used() for name, used in gauges.items()}
    await asyncio.sleep(seconds)
    return {name: (used() - before[name]) / seconds * 1000 for name, used in gauges.items()}


def _receiver_pid() -> dict[str, int]:
    """``{"receiver": pid}`` of the webhook receiver this process started (empty if none)."""
    for child in child_pids(os.getpid()):
        with contextlib.suppress(OSError):
            if b"bench.webhook_receiver" in Path(f"/proc/{child}/cmdline").read_bytes():
                return {"receiver": child}
    return {}


@contextlib.contextmanager
def _profiled(pids: dict[str, int]) -> Iterator[None]:
    """With BENCH_PROFILE=<dir>: py-spy records every process of the ladder (root only), at
    BENCH_PROFILE_RATE samples/s (50), with BENCH_PROFILE_ARGS added (``--gil``: CPU, not waits)."""
    target = os.environ.get("BENCH_PROFILE")
    if not target:
        yield
        return
    spy = Path(sys.executable).parent / "py-spy"
    Path(target).mkdir(parents=True, exist_ok=True)
    recorders = [
        subprocess.Popen(
            [
                str(spy),
                "record",
                "--nonblocking",
                *os.environ.get("BENCH_PROFILE_ARGS", "").split(),
                "-r",
                os.environ.get("BENCH_PROFILE_RATE", "50"),
                "-f",
                "raw",
                "-p",
                str(pid),
                "-o",
                f"{target}/{name}.txt",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            recorder.wait(30)


@contextlib.asynccontextmanager
async def _pusher(bridge: str, iccids: list[str], tag: str) -> AsyncIterator[Pusher]:
    """A function pushing ``count`` SMS to the bridge at ``rate`` as Skyline gateways would
    (JSON push with the ICCID appended), numbered from ``first``. Open loop: pushes start on
    schedule whether or not earlier ones were answered. The load generator shares the 2 cores
    with what it measures, so it takes as little as it can: a lean HTTP client (aiohttp's cost
    about as much CPU per push as the bridge) and orjson."""
    headers = {"x-gateway-secret": GATEWAY_SECRET, "content-type": "application/json"}
    async with LeanHttp(bridge, headers, limit=256) as http:

        async def push_one(n: int, marks: Pushed) -> bool:
            started = datetime.now(UTC)
            body = orjson.dumps(skyline_push(n, tag, iccids[n % len(iccids)]))
            status, answer = await http.post("/sms", body)
            if status != 200:
                return False
            sms_id = orjson.loads(answer)["ids"][0]
            marks.pushed[sms_id], marks.answered[sms_id] = started, datetime.now(UTC)
            return True

        yield paced(push_one)


@dataclass(frozen=True)
class Parts:
    """Where a step's push → webhook time went, (p50, p99) ms of each part: push → the bridge's
    200 (parsed, published, Kafka acknowledged); 200 → the webhook consumer's claim (its fetch,
    batch and claim); claim → the receiver's 2xx (the POST and the wait for a sender); and, beside
    the webhook, 200 → the projector's transaction (``inbound_sms.recorded_at``)."""

    acked: tuple[float, float]
    claimed: tuple[float, float]
    delivered: tuple[float, float]
    projected: tuple[float, float]

    def describe(self) -> str:
        parts = ("acked", self.acked), ("claimed", self.claimed), ("posted", self.delivered)
        shown = ", ".join(f"{name} {p50:.0f}/{p99:.0f}" for name, (p50, p99) in parts)
        return f"{shown}, projected {self.projected[0]:.0f}/{self.projected[1]:.0f} ms (p50/p99)"


@dataclass(frozen=True)
class Step:
    rate: int
    pushed: Pushed
    delivered: int
    projected: int
    p50_ms: float
    p99_ms: float
    parts: Parts

    @property
    def kept_up(self) -> bool:
        done = len(self.pushed.pushed)
        return (
            not self.pushed.errors
            and self.pushed.rate >= 0.95 * self.rate
            and self.delivered == self.projected == done
            and self.p99_ms < P99_TARGET_MS
        )

    def describe(self) -> str:
        done = len(self.pushed.pushed)
        return (
            f"{self.rate}/s: pushed at {self.pushed.rate:,.0f}/s, p50 {self.p50_ms:.0f} ms, "
            f"p99 {self.p99_ms:.0f} ms ({self.parts.describe()}), "
            f"{done - self.delivered} undelivered, "
            f"{done - self.projected} unprojected, {self.pushed.errors} push errors"
        )


async def _step_search(pool: asyncpg.Pool, push: Pusher, first: int, bare: float) -> list[Step]:
    """Steps the rate up until a step does not keep up; returns every step tried. Upwards only:
    a step after an overloaded one would measure the overload's aftermath."""
    steps: list[Step] = []
    fixed = os.environ.get("BENCH_STEP_RATES")
    for rate in _step_rates(bare, fixed):
        await asyncio.sleep(2)  # each step starts idle
        count = rate * STEP_S
        pushed = await push(rate, count, first)
        first += count
        delivered, projected = await _done_within(pool, list(pushed.pushed), DRAIN_S)
        latencies = await _latencies(pool, pushed.pushed)
        cuts = _percentiles(latencies)
        parts = await _parts(pool, pushed)
        steps.append(Step(rate, pushed, delivered, projected, cuts[49], cuts[98], parts))
        sys.stderr.write(f"  {steps[-1].describe()}\n")
        if not steps[-1].kept_up and not fixed:
            break
    return steps


def _step_rates(bare: float, fixed: str | None) -> list[int]:
    """The steps' rates: shares of the bare endpoint, or BENCH_STEP_RATES (SMS/s, comma
    separated; each is run) to compare CPU per SMS at the same rates whatever the load. Rounded
    up: a step rounded down would fall a hair short of its share (1,598/s of 4,567 is 34.99 %)."""
    if fixed:
        return [int(rate) for rate in fixed.split(",")]
    return [math.ceil(share * bare) for share in STEP_SHARES]


async def _done_within(pool: asyncpg.Pool, ids: list[str], limit_s: float) -> tuple[int, int]:
    """(delivered, projected) of these SMS once all are, or when ``limit_s`` has passed."""
    deadline = time.monotonic() + limit_s
    while True:
        delivered: int = await pool.fetchval(
            "SELECT count(*) FROM webhook_claims WHERE message_id = ANY($1::text[]) "
            "AND state = 'delivered'",
            ids,
        )
        projected: int = await pool.fetchval(
            "SELECT count(*) FROM inbound_sms WHERE message_id = ANY($1::text[])", ids
        )
        if delivered == projected == len(ids) or time.monotonic() > deadline:
            return delivered, projected
        await asyncio.sleep(0.2)


def _sustainable_row(
    layout: str, processes: int, ladder: Ladder, bare: float, bare_rounds: str
) -> Row:
    steps = ladder.steps
    best = max((s for s in steps if s.kept_up), key=lambda s: s.rate, default=None)
    share = (best.rate if best else 0) / bare
    tried = "; ".join(s.describe() for s in steps)
    return {
        "benchmark": f"gateway push → webhook received, sustainable maximum: {layout}",
        "processes": processes,
        "value": best.rate if best else 0,
        "unit": "SMS/s",
        "target": f">= {TARGET_SHARE:.0%} of bare endpoint (p99 < {P99_TARGET_MS} ms, "
        "nothing left behind)",
        "ratio": f"{share:.0%}",
        "met": share >= TARGET_SHARE,
        "detail": f"bare endpoint {bare:,.0f} push/s in this run ({bare_rounds}); "
        + (f"p50 {best.p50_ms:.0f} ms, p99 {best.p99_ms:.0f} ms; " if best else "no step kept up; ")
        + f"{STEP_S} s per step, every SMS delivered and projected within {DRAIN_S} s; "
        f"CPU µs per SMS over the ladder (bench: the load generator; broker, postgres: what the "
        f"pipeline runs on): {ladder.describe_cpu()}; "
        f"steps: {tried}",
    }


async def _latencies(pool: asyncpg.Pool, pushed: dict[str, datetime]) -> list[float]:
    """Milliseconds from each gateway push to its webhook answered 2xx (the claim rows)."""
    rows = await pool.fetch(
        "SELECT message_id, delivered_at FROM webhook_claims "
        "WHERE message_id = ANY($1::text[]) AND delivered_at IS NOT NULL",
        list(pushed),
    )
    return [(r["delivered_at"] - pushed[r["message_id"]]).total_seconds() * 1000 for r in rows]


async def _parts(pool: asyncpg.Pool, pushed: Pushed) -> Parts:
    ids = list(pushed.answered)
    claims = await pool.fetch(
        "SELECT message_id, created_at, delivered_at FROM webhook_claims "
        "WHERE message_id = ANY($1::text[]) AND delivered_at IS NOT NULL",
        ids,
    )
    stored = await pool.fetch(
        "SELECT message_id, recorded_at FROM inbound_sms WHERE message_id = ANY($1::text[])", ids
    )

    def ms(later: datetime, earlier: datetime) -> float:
        return (later - earlier).total_seconds() * 1000

    def cut(values: list[float]) -> tuple[float, float]:
        cuts = _percentiles(values)
        return round(cuts[49], 1), round(cuts[98], 1)

    at, answered = pushed.pushed, pushed.answered
    return Parts(
        acked=cut([ms(answered[i], at[i]) for i in ids]),
        claimed=cut([ms(c["created_at"], answered[c["message_id"]]) for c in claims]),
        delivered=cut([ms(c["delivered_at"], c["created_at"]) for c in claims]),
        projected=cut([ms(r["recorded_at"], answered[r["message_id"]]) for r in stored]),
    )


def _percentiles(values: list[float]) -> list[float]:
    return statistics.quantiles(values, n=100) if len(values) > 1 else [math.inf] * 99


def _row(benchmark: str, value: float, unit: str, target: str, detail: str) -> Row:
    return {
        "benchmark": benchmark,
        "processes": 1,
        "value": value,
        "unit": unit,
        "target": target,
        "detail": detail,
    }


if __name__ == "__main__":
    from bench.__main__ import print_table

    # `python -m bench.bench_delivery sustained`: the ladders only (with BENCH_PROFILE=<dir>,
    # py-spy records each process of the pipeline meanwhile)
    print_table(asyncio.run(sustained_rows() if sys.argv[1:] == ["sustained"] else run()))
    sys.exit(0)
