"""``simfleet`` commands as separate processes on the bench's broker and Postgres (as deployed),
with what they share: the environment, a seeded set of resellers, the Skyline push format.

The carrier is a Helix sandbox served by the benchmark's own process (shared by all, as a real
carrier would be); the gateways are unused (``SK_HOST`` points at the discard port).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from cryptography.fernet import Fernet

from bench.bench_webhooks import ENDPOINTS
from bench.support import STATE_DIR, dsn_of, fetch_wait_ms, idempotence
from infra.settings import Settings
from sandbox.helix_world import HelixWorld

GATEWAY_SECRET = "bench-gateway-secret"  # noqa: S105 (a bench's own throwaway)
RESELLERS = ENDPOINTS
START_S = 120  # every process running within this
SIMFLEET = str(Path(sys.executable).parent / "simfleet")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def simfleet_env(settings: Settings, helix_url: str, world: HelixWorld) -> dict[str, str]:
    """What every ``simfleet`` process of a benchmark is started with. The consumer groups keep
    the production session and heartbeat (the tests' 2 s / 400 ms made heartbeats 11 % of the
    workers' CPU under load: ~20 groups per process, each beating 2.5 times a second)."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "SIMFLEET_ENV": "test",
        "SIMFLEET_STATE_DIR": str(STATE_DIR),
        "SIMFLEET_BRIDGE_PORT": str(free_port()),
        "SIMFLEET_DASHBOARD_PORT": str(free_port()),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.kafka_bootstrap_servers or "",
        "KAFKA_IDEMPOTENCE": str(idempotence()).lower(),
        "KAFKA_FETCH_WAIT_MS": str(fetch_wait_ms()),
        "DATABASE_URL": dsn_of(settings),
        "TOPIC_PREFIX": settings.kafka.topic_prefix,
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


def _fresh_directory(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _says_running(log: Path) -> bool:
    return b"simfleet is running" in log.read_bytes()


@contextlib.asynccontextmanager
async def simfleet_processes(
    commands: Mapping[str, Sequence[str]], env: dict[str, str], logs: Path
) -> AsyncIterator[dict[str, int]]:
    """``simfleet <args>`` per name, each logging to a file (a pipe nobody reads would block it);
    yields their pids once each says it is running."""
    _fresh_directory(logs)
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        for name, args in commands.items():
            with (logs / f"{name}.log").open("wb") as out:
                procs[name] = await asyncio.create_subprocess_exec(
                    SIMFLEET, *args, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
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


def skyline_push(n: int, tag: str, iccid: str) -> dict[str, object]:
    """SMS number ``n`` as a Skyline gateway's JSON push (with the receiving SIM's ICCID)."""
    text = base64.b64encode(f"{tag} code {n:06d}".encode()).decode()
    row = [0, f"{n % 32 + 1}.01", int(time.time()), "+15551230000", f"555{n % 10_000_000:07d}"]
    return {"type": "recv-sms", "sms_num": 1, "sms": [[*row, text, iccid, ""]]}
