"""Gateway bridge throughput: a bare FastAPI endpoint vs the bridge (one SMS per push).

Both servers run in a subprocess (uvicorn, one process, as ``simfleet bridge`` would) so the
load generator here does not steal their event loop; on a 2-core machine the generator, the
server and the broker still share the CPUs, which is why the figure that matters is the ratio.
The bridge answers only after Kafka acknowledged (acks=all). Broker: the one ``python -m bench``
runs it on (``bench.support``: KAFKA_BOOTSTRAP_SERVERS if set, else an embedded one).

Each server is measured twice, bare, bridge, bridge, bare (``ORDER``), and its rounds together
make its figure.

    python -m bench.bench_bridge            # prints the table
    python -m bench.bench_bridge --seconds 5 --concurrency 32   # seconds per round
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import itertools
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from httpx_aiohttp import AiohttpTransport
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ROOT / ".simfleet" / "bench"
SECRET = "bench-gateway-secret"  # noqa: S105  (throwaway, loopback-only bench server)
CONCURRENCY = 64
DURATION_S = 8.0  # per round
WARMUP_S = 2.0
TARGET_RATIO = 0.6
# bare, bridge, bridge, bare: a machine getting faster or slower over the run (a broker's JIT
# warming, a neighbour's load) weighs on both alike; one round each read 53-60 % for the same code
ORDER = ("bare", "bridge", "bridge", "bare")


@dataclass(frozen=True)
class Load:
    requests: int
    errors: int
    elapsed_s: float
    latencies_s: list[float]
    server_cpu_s: float = 0.0  # the server process's CPU over the measured span

    @property
    def cpu_us_per_push(self) -> float:
        return 1e6 * self.server_cpu_s / max(1, self.requests)

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed_s

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def push_body(n: int) -> bytes:
    """One real-format recv-sms push, unique per request (distinct ids, as in production)."""
    text = f'Sender: 15551230000\r\nReceiver: "1.01" \r\n\r\nVERIFY {n:08d}'
    content = base64.b64encode(text.encode()).decode()
    row = [0, f"{1 + n % 32}.01", 1763900000 + n, "+15551230000", f"555987{n % 10000:04d}", content]
    return json.dumps({"type": "recv-sms", "sms_num": 1, "sms": [row]}).encode()


async def generate_load(url: str, seconds: float, concurrency: int) -> Load:
    latencies: list[float] = []
    errors = 0
    counter = itertools.count()
    headers = {"content-type": "application/json"}
    # httpx's default transport tops out at a few hundred POST/s here; aiohttp's does not
    transport = AiohttpTransport(limits=httpx.Limits(max_connections=concurrency))
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while (started := time.perf_counter()) < deadline:
                response = await client.post(url, content=push_body(next(counter)), headers=headers)
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return Load(len(latencies), errors, elapsed, latencies)


# --- the servers (subprocess side) -------------------------------------------------------------


def bare_app() -> FastAPI:
    from infra.http import NO_TELEMETRY

    app = FastAPI(telemetry=NO_TELEMETRY)  # as the bridge: the reference carries no less

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/s/{secret}/sms")
    async def sms(request: Request) -> dict[str, int]:
        await request.body()
        return {"accepted": 1}

    return app


async def serve(mode: str, port: int, bootstrap: str, prefix: str) -> None:
    from infra.clock import SystemClock
    from infra.gc_tuning import tune_for_service
    from infra.http import serve_http
    from infra.kafka import build_broker
    from infra.logging import configure
    from infra.settings import KafkaSettings, SecretsSettings, Settings
    from producers.skyline.bridge import bridge_bus, create_bridge_app

    configure("json", "INFO", [SECRET])  # as in production: JSON lines (to /dev/null here)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if mode == "bare":
        async with serve_http(bare_app(), port=port):
            tune_for_service()
            await stop.wait()
        return
    settings = Settings(
        kafka=KafkaSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix),
        secrets=SecretsSettings(gateway_secret=SecretStr(SECRET)),
    )
    broker = build_broker(settings.kafka, bootstrap)
    async with broker:
        app = create_bridge_app(settings, bridge_bus(broker, settings), SystemClock())
        async with serve_http(app, port=port):
            tune_for_service()
            await stop.wait()


# --- the run (load generator side) -------------------------------------------------------------


@contextlib.contextmanager
def server_process(mode: str, port: int, bootstrap: str, prefix: str) -> Iterator[tuple[str, int]]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "bench.bench_bridge", "serve", mode, str(port)]
    command += ["--bootstrap", bootstrap, "--prefix", prefix]
    with (STATE_DIR / f"server-{mode}.log").open("ab") as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_ready(base_url: str, within_s: float = 120.0) -> None:
    # a busy 2-core machine can take a minute to import and start a FastAPI server
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{base_url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"bench server at {base_url} did not start; see {STATE_DIR}")


async def measure(mode: str, bootstrap: str, prefix: str, seconds: float, concurrency: int) -> Load:
    from bench.support import cpu_s
    from infra.http import free_port

    with server_process(mode, free_port(), bootstrap, prefix) as (base_url, pid):
        await wait_ready(base_url)
        url = f"{base_url}/s/{SECRET}/sms"
        await generate_load(
            url, min(WARMUP_S, seconds), concurrency
        )  # connections, JIT-free caches
        cpu_started = cpu_s(pid)
        load = await generate_load(url, seconds, concurrency)
        return dataclasses.replace(load, server_cpu_s=cpu_s(pid) - cpu_started)


def combined(loads: list[Load]) -> Load:
    """Rounds of one server as one measurement: their requests over their time together."""
    return Load(
        requests=sum(load.requests for load in loads),
        errors=sum(load.errors for load in loads),
        elapsed_s=sum(load.elapsed_s for load in loads),
        latencies_s=[latency for load in loads for latency in load.latencies_s],
        server_cpu_s=sum(load.server_cpu_s for load in loads),
    )


def row(name: str, load: Load, target: str, **extra: object) -> dict[str, object]:
    return {
        "benchmark": name,
        "value": round(load.rate, 1),
        "unit": "push/s",
        "target": target,
        "server_cpu_us_per_push": round(load.cpu_us_per_push),
        "p50_ms": round(load.percentile_ms(0.50), 2),
        "p99_ms": round(load.percentile_ms(0.99), 2),
        "requests": load.requests,
        "errors": load.errors,
        **extra,
    }


async def run(
    seconds: float = DURATION_S, concurrency: int = CONCURRENCY
) -> list[dict[str, object]]:
    from bench.support import kafka_bootstrap
    from infra.kafka import ensure_topics
    from infra.settings import KafkaSettings

    with kafka_bootstrap() as bootstrap:
        kafka = KafkaSettings(
            kafka_bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}."
        )
        await ensure_topics(bootstrap, kafka)
        rounds: dict[str, list[Load]] = {"bare": [], "bridge": []}
        for mode in ORDER:
            load = await measure(mode, bootstrap, kafka.topic_prefix, seconds, concurrency)
            rounds[mode].append(load)
    bare, bridge = combined(rounds["bare"]), combined(rounds["bridge"])
    ratio = bridge.rate / bare.rate
    each = {mode: "/".join(f"{load.rate:,.0f}" for load in loads) for mode, loads in rounds.items()}
    return [
        row(
            "bare endpoint pushes/s",
            bare,
            "reference",
            concurrency=concurrency,
            processes=1,
            rounds=f"{each['bare']} push/s",
        ),
        row(
            "bridge pushes/s",
            bridge,
            f">= {TARGET_RATIO:.0%} of bare endpoint",
            concurrency=concurrency,
            processes=1,
            rounds=f"{each['bridge']} push/s",
            ratio=f"{ratio:.0%}",
            # steadier than the rates when others load the machine: CPU does not wait
            cpu_ratio=f"bare/bridge CPU per push {bare.cpu_us_per_push / bridge.cpu_us_per_push:.0%}",
            met=ratio >= TARGET_RATIO,
        ),
    ]


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for r in rows for key in r))
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command")
    server = sub.add_parser("serve", help="(internal) run one bench server")
    server.add_argument("mode", choices=["bare", "bridge"])
    server.add_argument("port", type=int)
    server.add_argument("--bootstrap", required=True)
    server.add_argument("--prefix", required=True)
    parser.add_argument("--seconds", type=float, default=DURATION_S)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args()
    if args.command == "serve":
        from infra import event_loop

        # both servers on the loop ``simfleet bridge`` runs on (a bare uvicorn picks uvloop too)
        event_loop.run(serve(args.mode, args.port, args.bootstrap, args.prefix))
    else:
        print_table(asyncio.run(run(args.seconds, args.concurrency)))


if __name__ == "__main__":
    main()
