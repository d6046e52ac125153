"""The sandbox carrier served as a process of its own: the Helix sandbox and the Skyline gateways
around one ``HelixWorld``, so that every simfleet process of a test talks to the same carrier (a
``simfleet workers`` process without HX_API_BASE would run a sandbox of its own, one per process).

``python -m tests.support.carrier_process`` reads its configuration from ``SANDBOX_CARRIER``
(JSON: the Helix credentials, ``latency_s`` per Helix call, the bridge's URL and the gateway
secret), serves until SIGTERM, and prints one JSON line once serving: the Helix URL and the
gateways as ``SK_GATEWAYS`` lists them. The gateways seat every active line in a port and push
their status to the bridge, as the demo's do. ``/_sandbox/stats`` on the Helix URL is the
carrier's own record: activations and MDN changes per ICCID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from infra.http import serve_http
from sandbox.gateway_api import gateway_addresses, serve_gateways
from sandbox.gateways import GatewayNetwork
from sandbox.helix import HelixFaults, create_helix_sandbox
from sandbox.helix_world import HelixWorld

GATEWAY_IDS = ("00-30-f1-00-0c-01", "00-30-f1-00-0c-02", "00-30-f1-00-0c-03")
STATUS_PUSH_S = 5.0
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Carrier:
    """The running carrier process, as the test and the simfleet processes see it."""

    helix_url: str
    gateways: list[dict[str, Any]]  # SK_GATEWAYS entries

    def environment(self, client_id: str, username: str, password: str) -> dict[str, str]:
        """What a simfleet process needs to reach this carrier and these gateways."""
        return {
            "HX_API_BASE": self.helix_url,
            "HX_TOKEN_URL": f"{self.helix_url}/oauth/token",
            "HX_CLIENT_ID": client_id,
            "HX_GRANT_USERNAME": username,
            "HX_GRANT_PASSWORD": password,
            "SK_GATEWAYS": json.dumps(self.gateways),
        }

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.helix_url) as http:
            answer = await http.get("/_sandbox/stats")
            answer.raise_for_status()
            stats: dict[str, Any] = answer.json()
            return stats

    async def number_of(self, http: httpx.AsyncClient, iccid: str) -> str | None:
        """The line's number as the carrier knows it now (E.164), None without a line."""
        answer = await http.get(f"{self.helix_url}/_sandbox/subscribers/{iccid}")
        if answer.status_code == 404:
            return None
        number = answer.json().get("phoneNumber")
        return f"+1{number}" if number else None


@contextlib.asynccontextmanager
async def carrier_process(config: dict[str, Any], log_path: Path) -> AsyncIterator[Carrier]:
    env = {**os.environ, "SANDBOX_CARRIER": json.dumps(config)}
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.carrier_process",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(START_TIMEOUT_S):
            line = (await proc.stdout.readline()).decode()
        assert line, f"the carrier process ended before serving (see {log_path})"
        announced = json.loads(line)
        yield Carrier(announced["helix"], announced["gateways"])
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def serve(config: dict[str, Any]) -> None:
    world = HelixWorld(
        client_id=config["client_id"], username=config["username"], password=config["password"]
    )
    latency_s = float(config.get("latency_s", 0.0))
    helix_app = create_helix_sandbox(
        world, "slow" if latency_s > 0 else "happy", HelixFaults(latency_s=latency_s)
    )
    network = GatewayNetwork(world, gateways=GATEWAY_IDS, auto_insert=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    async with serve_http(helix_app) as helix_url, serve_gateways(network) as urls:
        network.connect_bridge(config["bridge_url"], config["gateway_secret"])
        pushing = asyncio.create_task(network.run_status_pushes(STATUS_PUSH_S))
        listed = [
            {**g.model_dump(exclude={"password"}), "password": g.password.get_secret_value()}
            for g in gateway_addresses(network, urls)
            if g.password is not None
        ]
        sys.stdout.write(json.dumps({"helix": helix_url, "gateways": listed}) + "\n")
        sys.stdout.flush()
        await stopping.wait()
        pushing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pushing
    await network.aclose()


if __name__ == "__main__":
    asyncio.run(serve(json.loads(os.environ["SANDBOX_CARRIER"])))
