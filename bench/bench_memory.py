"""Peak memory per process: ``simfleet bridge``, ``workers``, ``projector``, ``scheduler`` and
``dashboard`` as separate processes (as deployed for scale-out) on the bench's broker and
Postgres, while SMS are pushed through the bridge, projected and delivered as webhooks to a
receiver in another process. The figure is each process's peak resident set (``VmHWM``).

The carrier is a Helix sandbox served by this process (shared by all, as a real carrier would
be); the gateways are unused (``SK_HOST`` points at the discard port).

    .venv/bin/python -m bench bench_memory
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
from cryptography.fernet import Fernet
from httpx_aiohttp import AiohttpTransport

from bench.bench_delivery import GATEWAY_SECRET, seed_resellers, skyline_push
from bench.bench_webhooks import receiver_process
from bench.support import STATE_DIR, bench_settings, dsn_of
from infra.http import serve_http
from infra.postgres import create_pool
from infra.settings import Settings
from infra.webhook_signing import SecretBox
from sandbox.helix import create_helix_sandbox
from sandbox.helix_world import HelixWorld

PROCESSES = ("bridge", "workers", "projector", "scheduler", "dashboard")
SMS = 5_000
RATE = 500  # SMS/s pushed to the bridge, at most
IN_FLIGHT = 64
START_S = 120  # every process running within this
DONE_S = 120  # every SMS projected and delivered within this
SIMFLEET = str(Path(sys.executable).parent / "simfleet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _environment(settings: Settings, helix_url: str, world: HelixWorld) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "SIMFLEET_ENV": "test",
        "SIMFLEET_STATE_DIR": str(STATE_DIR),
        "SIMFLEET_BRIDGE_PORT": str(_free_port()),
        "SIMFLEET_DASHBOARD_PORT": str(_free_port()),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.kafka_bootstrap_servers or "",
        "DATABASE_URL": dsn_of(settings),
        "TOPIC_PREFIX": settings.kafka.topic_prefix,
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "400",
        "HX_API_BASE": helix_url,
        "HX_TOKEN_URL": f"{helix_url}/oauth/token",
        "HX_CLIENT_ID": world.client_id,
        "HX_GRANT_USERNAME": world.username,
        "HX_GRANT_PASSWORD": world.password,
        "SK_HOST": "127.0.0.1",
        "SK_PORT": "9",
        "GATEWAY_SECRET": GATEWAY_SECRET,
        "DASHBOARD_AUTH": f"bench:{secrets.token_urlsafe(12)}",
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_SEALING_KEY": Fernet.generate_key().decode(),
    }


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set so far, from the kernel (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def _fresh_directory(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _says_running(log: Path) -> bool:
    return b"simfleet is running" in log.read_bytes()


@contextlib.asynccontextmanager
async def simfleet_processes(env: dict[str, str], logs: Path) -> AsyncIterator[dict[str, int]]:
    """The processes, each logging to a file (a pipe nobody reads would block it); yields their
    pids once each says it is running."""
    _fresh_directory(logs)
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        for name in PROCESSES:
            with (logs / f"{name}.log").open("wb") as out:
                procs[name] = await asyncio.create_subprocess_exec(
                    SIMFLEET, name, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
                )
        deadline = time.monotonic() + START_S
        for name, proc in procs.items():
            while not _says_running(logs / f"{name}.log"):
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"simfleet {name} did not start; see {logs / name}.log")
                await asyncio.sleep(0.2)
        yield {name: proc.pid for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.terminate()
        for proc in procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _push(bridge: str, tag: str, iccids: list[str]) -> float:
    """SMS pushed at up to RATE, at most IN_FLIGHT unanswered (a gateway fleet waits for its
    answers); returns the rate achieved."""
    in_flight = asyncio.Semaphore(IN_FLIGHT)
    async with httpx.AsyncClient(timeout=30, transport=AiohttpTransport()) as http:

        async def push(n: int) -> None:
            try:
                answer = await http.post(
                    f"{bridge}/sms",
                    json=skyline_push(n, tag, iccids[n % len(iccids)]),
                    headers={"x-gateway-secret": GATEWAY_SECRET},
                )
                answer.raise_for_status()
            finally:
                in_flight.release()

        tasks = []
        began = time.perf_counter()
        for n in range(SMS):
            delay = began + n / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()
            tasks.append(asyncio.create_task(push(n)))
        await asyncio.gather(*tasks)
        return SMS / (time.perf_counter() - began)


async def _until_done(pool: asyncpg.Pool, tag: str) -> None:
    deadline = time.monotonic() + DONE_S
    while True:
        projected = await pool.fetchval(
            "SELECT count(*) FROM inbound_sms WHERE body LIKE $1", f"{tag} code %"
        )
        delivered = await pool.fetchval(
            "SELECT count(*) FROM webhook_claims WHERE reseller_id LIKE $1 AND state = 'delivered'",
            f"{tag}-%",
        )
        if projected == delivered == SMS:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"of {SMS} SMS: {projected} projected, {delivered} delivered")
        await asyncio.sleep(0.5)


async def run() -> list[dict[str, object]]:
    world = HelixWorld()
    tag = f"mem{uuid.uuid4().hex[:8]}"
    async with (
        bench_settings() as settings,
        serve_http(create_helix_sandbox(world)) as helix_url,
        receiver_process() as receiver,
    ):
        env = _environment(settings, helix_url, world)
        pool = await create_pool(dsn_of(settings), max_size=2)
        try:
            box = SecretBox.from_setting(env["WEBHOOK_SEALING_KEY"], STATE_DIR)
            iccids = await seed_resellers(pool, receiver, box, tag)
            async with simfleet_processes(env, STATE_DIR / "memory" / tag) as pids:
                idle = {name: peak_rss_mib(pid) for name, pid in pids.items()}
                cpu_before = {name: cpu_s(pid) for name, pid in pids.items()}
                began = time.perf_counter()
                rate = await _push(f"http://127.0.0.1:{env['SIMFLEET_BRIDGE_PORT']}", tag, iccids)
                await _until_done(pool, tag)
                took = time.perf_counter() - began
                peaks = {name: peak_rss_mib(pid) for name, pid in pids.items()}
                cpu = {name: cpu_s(pid) - cpu_before[name] for name, pid in pids.items()}
        finally:
            await pool.close()
    load = (
        f"{SMS:,} SMS pushed at {rate:,.0f}/s (up to {RATE}/s), all projected and delivered "
        f"in {took:.1f} s"
    )
    return [
        {
            "benchmark": f"peak memory: {name}",
            "value": round(peaks[name], 1),
            "unit": "MiB",
            "target": "reference",
            "detail": f"VmHWM; {idle[name]:.0f} MiB once started; "
            + (load if name in {"bridge", "workers", "projector"} else "idle during the load")
            + f"; {cpu[name]:.1f} CPU s meanwhile",
        }
        for name in PROCESSES
    ]


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(asyncio.run(run()))
