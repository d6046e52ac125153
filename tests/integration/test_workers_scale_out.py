"""Two `simfleet workers` processes in one consumer group share the partitions, and no event is
processed twice (each SIM is activated at the carrier exactly once)."""

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from events.sim import SimActivationRequested
from infra.bus import Bus
from infra.http import serve_http
from infra.kafka import build_broker
from infra.settings import Settings
from sandbox.helix import create_helix_sandbox
from sandbox.helix_world import HelixWorld, make_iccid, make_imei
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration

SIMFLEET = str(Path(sys.executable).parent / "simfleet")
METRICS_LINE = re.compile(r"health and metrics: (http://[\d.:]+)/healthz")


@contextlib.asynccontextmanager
async def workers_process(env: dict[str, str]) -> AsyncIterator[str]:
    """A `simfleet workers provisioning` process; yields its ops URL once it is running."""
    proc = await asyncio.create_subprocess_exec(
        SIMFLEET,
        "workers",
        "provisioning",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ops, line = "", ""
        async with asyncio.timeout(60):
            while not ops or "is running" not in line:
                line = (await proc.stdout.readline()).decode()
                assert line, "the workers process ended before it was running"
                if match := METRICS_LINE.search(line):
                    ops = match.group(1)
        yield ops
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)


async def consumed(http: httpx.AsyncClient, ops: str) -> float:
    text = (await http.get(f"{ops}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("simfleet_events_consumed_total{")
    )


async def test_two_workers_share_partitions_and_activate_each_sim_once(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> None:
    world = HelixWorld()
    async with serve_http(create_helix_sandbox(world)) as helix_url:
        env = {
            **os.environ,
            "SIMFLEET_ENV": "test",
            "SIMFLEET_STATE_DIR": str(settings.state_dir),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DATABASE_URL": database_url,
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
        }
        broker = build_broker(settings.kafka, kafka_bootstrap)
        await broker.start()
        bus = Bus(broker, settings.kafka.topic_prefix)
        sent: list[str] = []

        async def request_more(count: int) -> None:
            iccids = [make_iccid(len(sent) + n) for n in range(1, count + 1)]
            await bus.emit_many(
                SimActivationRequested.create(
                    producer="t",
                    time=datetime.now(UTC),
                    iccid=iccid,
                    imei=make_imei(len(sent) + n),
                    ref="scale-out",
                )
                for n, iccid in enumerate(iccids, 1)
            )
            sent.extend(iccids)

        try:
            async with (
                workers_process(env) as first,
                workers_process(env) as second,
                httpx.AsyncClient() as http,
            ):

                async def both_busy() -> tuple[float, float]:
                    await request_more(10)  # keep feeding until the group has settled
                    return await consumed(http, first), await consumed(http, second)

                shares = await eventually(
                    both_busy, until=lambda c: min(c) > 0, within=60, interval=0.5
                )
                await eventually(
                    lambda: asyncio.sleep(0, sum(world.activations.values())),
                    until=lambda n: n == len(sent),
                    within=60,
                )
        finally:
            await broker.stop()

    assert min(shares) > 0, f"one process consumed nothing: {shares}"
    assert set(world.activations) == set(sent)
    assert max(world.activations.values()) == 1, "a SIM was activated twice"
