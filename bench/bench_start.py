"""``simfleet run`` on the embedded defaults, as a new user starts it: how long until it is ready
(every consumer group joined, the dashboard answering) and until the first demo webhook lands;
then the demo's trickle latency, push → webhook received, one SMS every few seconds.

Each run is a ``simfleet run`` process with a state directory of its own: first fresh (the
first start of a clone), then started again on the same state (the usual ``make run``). The
install is warm (the venv exists), so ``make run`` adds only make's own check.

    .venv/bin/python -m bench bench_start
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from sandbox.skyline import inject_sms

SIMFLEET = str(Path(sys.executable).parent / "simfleet")
STATE_ROOT = Path(".simfleet/bench-start")
GATEWAY_SECRET = "bench-start-gateway-secret"  # noqa: S105 (the bench's own gateway)
START_TIMEOUT_S = float(os.environ.get("BENCH_START_TIMEOUT_S", "120"))
TRICKLE_SMS = 30
TRICKLE_EVERY_S = 2.0
ARRIVAL_S = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Started:
    infrastructure_s: float = 0.0  # migrations and topics done (the embedded services up)
    ready_s: float = 0.0  # "ready in …" printed: every group joined, every server listening
    dashboard_s: float = 0.0  # the dashboard answered
    first_webhook_s: float = 0.0
    lines: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def simfleet_run(
    state: Path, ports: dict[str, str]
) -> AsyncIterator[tuple[Started, dict[str, str]]]:
    env = {
        **os.environ,
        **ports,
        "SIMFLEET_STATE_DIR": str(state),
        "GATEWAY_SECRET": GATEWAY_SECRET,
        "SIMFLEET_LOG_FORMAT": "json",
        "SIMFLEET_ENV": "development",  # as `make run` says it: the demo's webhooks reach loopback
    }
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
        env.pop(name, None)  # the embedded defaults, as on a fresh clone
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        SIMFLEET, "run", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    started = Started()
    stdout, stderr = proc.stdout, proc.stderr
    if stdout is None or stderr is None:
        raise RuntimeError("no pipes to the simfleet process")

    async def watch_stderr() -> None:
        while line := (await stderr.readline()).decode():
            if "infrastructure_ready" in line and not started.infrastructure_s:
                started.infrastructure_s = time.monotonic() - began

    watcher = asyncio.create_task(watch_stderr())
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while line := (await stdout.readline()).decode():
                started.lines.append(line.rstrip())
                if line.startswith("ready in "):
                    started.ready_s = time.monotonic() - began
                    break
            if not started.ready_s:
                raise RuntimeError(
                    "simfleet run ended before it was ready:\n" + "\n".join(started.lines)
                )
            dashboard = f"http://127.0.0.1:{ports['SIMFLEET_DASHBOARD_PORT']}/healthz"
            receiver = f"http://127.0.0.1:{ports['WEBHOOK_SANDBOX_RECEIVER_PORT']}/hooks/demo"
            async with httpx.AsyncClient(timeout=5) as http:
                while (await http.get(dashboard)).status_code != 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                started.dashboard_s = time.monotonic() - began
                while not (await http.get(receiver)).json():  # noqa: ASYNC110 (another process)
                    await asyncio.sleep(0.05)
                started.first_webhook_s = time.monotonic() - began
        yield started, ports
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def trickle(ports: dict[str, str]) -> tuple[list[float], list[int]]:
    """Pushes one SMS every ``TRICKLE_EVERY_S`` to a demo SIM's number; each one's latency from
    the push until the receiver recorded its webhook (both clocks are this machine's)."""
    bridge = f"http://127.0.0.1:{ports['SIMFLEET_BRIDGE_PORT']}"
    receiver = f"http://127.0.0.1:{ports['WEBHOOK_SANDBOX_RECEIVER_PORT']}/hooks/demo"
    latencies: list[float] = []
    lost: list[int] = []
    async with httpx.AsyncClient(timeout=5) as http:
        number = next(
            d["payload"]["data"]["number"]
            for d in (await http.get(receiver)).json()
            if d["payload"]["data"].get("number")
        )
        run = uuid.uuid4().hex[:6]
        for n in range(TRICKLE_SMS):
            body = f"trickle {run} {n}"
            pushed = time.time()
            await inject_sms(bridge, GATEWAY_SECRET, number, body)
            arrived = await _arrival(http, receiver, body)
            if arrived is None:
                lost.append(n)
                continue
            landed = datetime.fromisoformat(arrived["received_at"]).timestamp()
            latencies.append((landed - pushed) * 1000)
            await asyncio.sleep(TRICKLE_EVERY_S)
    return latencies, lost


async def _arrival(http: httpx.AsyncClient, receiver: str, body: str) -> dict[str, str] | None:
    deadline = time.monotonic() + ARRIVAL_S
    while time.monotonic() < deadline:
        for delivery in (await http.get(receiver)).json():
            if delivery["payload"]["data"].get("body") == body:
                return dict(delivery)
        # the receiver lives in the measured process: ask it rarely (its own clock times arrival)
        await asyncio.sleep(0.1)
    return None


async def run() -> list[dict[str, object]]:
    state = STATE_ROOT / uuid.uuid4().hex[:8]
    state.parent.mkdir(parents=True, exist_ok=True)
    # fixed across both runs, as the defaults are: the demo endpoint's URL names the receiver's
    ports = {
        "SIMFLEET_BRIDGE_PORT": str(_free_port()),
        "SIMFLEET_DASHBOARD_PORT": str(_free_port()),
        "WEBHOOK_SANDBOX_RECEIVER_PORT": str(_free_port()),
    }
    try:
        async with simfleet_run(state, ports) as (fresh, _ports):
            pass
        async with simfleet_run(state, ports) as (again, _ports):
            latencies, lost = await trickle(ports)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    rows: list[dict[str, object]] = []
    for label, s in (("fresh state", fresh), ("restart on its state", again)):
        rows += [
            {
                "benchmark": f"simfleet run ready after infrastructure up ({label})",
                "value": round(s.ready_s - s.infrastructure_s, 1),
                "unit": "s",
                "target": "< 10 s",
                "detail": (
                    f"every consumer group joined; infrastructure up {s.infrastructure_s:.1f} s "
                    f"after start, ready {s.ready_s:.1f} s, dashboard answered {s.dashboard_s:.1f} s "
                    "(groups joined one after the other before: ~37 s after infrastructure up)"
                ),
            },
            {
                "benchmark": f"simfleet run first demo webhook ({label})",
                "value": round(s.first_webhook_s, 1),
                "unit": "s",
                "target": "< 20 s",
                "detail": "from the process start (before: 62 s from `make run`)",
            },
        ]
    ordered = sorted(latencies) or [float("nan")]
    rows.append(
        {
            "benchmark": "trickle: gateway push → webhook received, p50",
            "value": round(statistics.median(ordered), 1),
            "unit": "ms",
            "target": "< 100 ms",
            "detail": (
                f"{len(ordered)} SMS, one every {TRICKLE_EVERY_S:g} s, `simfleet run` defaults "
                f"(the demo's traffic too), {len(lost)} without a webhook within {ARRIVAL_S:g} s; p99 {ordered[max(0, int(len(ordered) * 0.99) - 1)]:.1f} ms, "
                f"max {ordered[-1]:.1f} ms"
            ),
        }
    )
    return rows
