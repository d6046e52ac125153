"""Peak memory per process: ``simfleet bridge``, ``workers``, ``projector``, ``scheduler`` and
``dashboard`` as separate processes (as deployed for scale-out) on the bench's broker and
Postgres, while SMS are pushed through the bridge, projected and delivered as webhooks to a
receiver in another process. The figure is each process's peak resident set (``VmHWM``).

The carrier and the processes' settings: ``bench.processes``.

    .venv/bin/python -m bench bench_memory
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
from httpx_aiohttp import AiohttpTransport

from bench.bench_webhooks import receiver_process, seed_resellers
from bench.processes import (
    GATEWAY_SECRET,
    simfleet_env,
    simfleet_processes,
    skyline_push,
)
from bench.support import STATE_DIR, bench_settings, cpu_s, dsn_of, peak_rss_mib
from infra.http import serve_http
from infra.postgres import create_pool
from infra.webhook_signing import SecretBox
from sandbox.helix import create_helix_sandbox
from sandbox.helix_world import HelixWorld

PROCESSES = ("bridge", "workers", "projector", "scheduler", "dashboard")
SMS = 5_000
RATE = 500  # SMS/s pushed to the bridge, at most
IN_FLIGHT = 64
DONE_S = 120  # every SMS projected and delivered within this


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
        env = simfleet_env(settings, helix_url, world)
        pool = await create_pool(dsn_of(settings), max_size=2)
        try:
            box = SecretBox.from_setting(env["WEBHOOK_SEALING_KEY"], STATE_DIR)
            iccids = await seed_resellers(pool, receiver, box, tag)
            commands = {name: [name] for name in PROCESSES}
            async with simfleet_processes(commands, env, STATE_DIR / "memory" / tag) as pids:
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
            "processes": len(PROCESSES),
            "detail": f"VmHWM; {idle[name]:.0f} MiB once started; "
            + (load if name in {"bridge", "workers", "projector"} else "idle during the load")
            + f"; {cpu[name]:.1f} CPU s meanwhile",
        }
        for name in PROCESSES
    ]


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(asyncio.run(run()))
