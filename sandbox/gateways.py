"""Simulated Skyline gateways around the Helix sandbox's world: a real HTTP server speaking
EXTERNAL_APIS §1.2 (send SMS) and §1.3 (port status) on loopback.

``GatewayNetwork`` holds the gateways (``ports``: which SIM sits where) and what happens to a
sent SMS: it arrives on the port of the SIM that has the number *now* according to the carrier
(``HelixWorld``) — after a rotation the new number reaches the same SIM — and is pushed to the
bridge as a device pushes it (``SandboxGateway``: receiving port, ICCID appended). Numbers no
SIM of ours has leave the network (``external``). ``push_status`` sends each gateway's
``dev-status``. ``create_gateways_sandbox(network)`` serves the first gateway's API at ``/``
and every gateway's under ``/gw/<gateway id>/``; tasks may name the port ``from`` or ``port``.

Modes name the world, like the Helix sandbox's: ``happy``; ``lossy`` (accepted, then lost: a
fraction, or every SMS to chosen numbers or from chosen SIMs); ``slow`` (arrives after
``delay_s``); ``busy`` (the first tasks answer 16 Too Many Task); ``flaky_5xx`` (the first
requests answer HTTP 500); ``echoing`` (the first requests answer code 500 "Server Error for
<the request's query>", credentials included, as some firmware does).
``counts``, ``sent`` and ``tasks`` are what tests read; ``drain()`` waits for SMS in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from events.types import normalize_e164
from sandbox.gateway_ports import REGISTERED, PortRegistry
from sandbox.helix_world import HelixWorld
from sandbox.skyline import DEFAULT_GATEWAY_ID, BridgeRefused, SandboxGateway

GatewayMode = Literal["happy", "lossy", "slow", "busy", "flaky_5xx", "echoing"]
GATEWAY_MODES: tuple[GatewayMode, ...] = get_args(GatewayMode)
UNKNOWN_SENDER = "+10000000000"
log = structlog.get_logger("simfleet.sandbox.gateways")


@dataclass
class GatewayFaults:
    fraction: float = 1.0  # lossy: share of SMS lost (when no ``numbers`` are named)
    numbers: frozenset[str] = frozenset()  # lossy: SMS to these numbers (E.164) are lost
    senders: frozenset[str] = frozenset()  # lossy: SMS sent by these SIMs (ICCIDs) are lost
    delay_s: float = 1.0  # slow: how late an SMS arrives
    limit: int | None = 1  # busy, flaky_5xx, echoing: this many faults, then normal service
    seed: int = 0


@dataclass(frozen=True)
class SentSms:
    gateway_id: str
    port: str
    sender_iccid: str
    to: str
    text: str
    tid: int
    fate: str  # delivered | lost | external | undeliverable


class GatewayNetwork:
    def __init__(
        self,
        carrier: HelixWorld,
        *,
        username: str = "sandbox",
        password: str = "sandbox-sk-password",  # noqa: S107 (the sandbox's own fake credential)
        gateways: Iterable[str] = (DEFAULT_GATEWAY_ID,),
        mode: GatewayMode = "happy",
        faults: GatewayFaults | None = None,
        auto_insert: bool = False,
    ) -> None:
        self.username, self.password = username, password
        self.ports = PortRegistry(carrier, gateways, auto_insert=auto_insert)
        self.counts: Counter[str] = Counter()
        self.sent: list[SentSms] = []
        self.tasks: list[dict[str, Any]] = []  # every task as received, for wire-format checks
        self._tids: dict[str, set[int]] = {g: set() for g in self.ports.sims}
        self._bridge: tuple[str, str] | None = None
        self._pushers: dict[str, SandboxGateway] = {}
        self._http = httpx.AsyncClient(timeout=10.0)
        self._in_flight: set[asyncio.Task[None]] = set()
        self.switch(mode, faults)

    def switch(self, mode: GatewayMode, faults: GatewayFaults | None = None) -> None:
        """Changes the world a running server simulates; fault counts and dice start afresh."""
        self.mode, self.faults, self.faults_injected = mode, faults or GatewayFaults(), 0
        self._rng = random.Random(self.faults.seed)

    def connect_bridge(self, url: str, secret: str) -> None:
        self._bridge = (url.rstrip("/"), secret)

    # --- sending ---------------------------------------------------------------------------
    def submit(self, gateway_id: str, task: dict[str, Any]) -> str:
        """One send-sms task → its status ``"<code> <text>"``; accepted SMS travel in the
        background."""
        self.tasks.append(task)
        tid, port = task.get("tid"), task.get("from") or task.get("port")
        refusal = self._refusal(gateway_id, tid, port, task)
        if refusal is not None:
            self.counts[f"refused:{refusal.split()[0]}"] += 1
            return refusal
        tid_, port_ = cast(int, tid), cast(str, port)  # checked by _refusal
        self._tids[gateway_id].add(tid_)
        sender = self.ports.sims[gateway_id][port_]
        for to in str(task["to"]).split(","):
            self.counts["accepted"] += 1
            sms = SentSms(gateway_id, port_, sender, to.strip(), str(task["sms"]), tid_, "")
            job = asyncio.create_task(self._deliver(sms))
            self._in_flight.add(job)
            job.add_done_callback(self._in_flight.discard)
        return "0 OK"

    def _refusal(self, gateway_id: str, tid: Any, port: Any, task: dict[str, Any]) -> str | None:
        if not isinstance(tid, int):
            return "11 TID Expected"
        if not isinstance(port, str) or not port:
            return "12 FROM Expected"
        if not task.get("to"):
            return "9 TO Expected"
        if not task.get("sms"):
            return "8 SMS Expected"
        if tid in self._tids[gateway_id]:
            return "13 Duplicated TaskId"
        if not self.ports.valid_port(port):
            return "2 Invalid Port"
        if self.ports.port_state(self.ports.sim_at(gateway_id, port)) != REGISTERED:
            return "5 SIM Unregistered"
        return "16 Too Many Task" if self._fault("busy") else None

    def _fault(self, mode: GatewayMode) -> bool:
        limit = self.faults.limit
        if self.mode != mode or (limit is not None and self.faults_injected >= limit):
            return False
        self.faults_injected += 1
        return True

    def _lost(self, to: str, sender_iccid: str) -> bool:
        if self.mode != "lossy":
            return False
        if self.faults.numbers or self.faults.senders:
            return to in self.faults.numbers or sender_iccid in self.faults.senders
        return self._rng.random() < self.faults.fraction

    async def _deliver(self, sms: SentSms) -> None:
        if self.mode == "slow":
            await asyncio.sleep(self.faults.delay_s)
        try:
            to = normalize_e164(sms.to)
        except ValueError:
            to, fate = sms.to, "undeliverable"
        else:
            fate = (
                "lost"
                if self._lost(to, sms.sender_iccid)
                else await self._arrive(sms.sender_iccid, to, sms.text)
            )
        self.counts[fate] += 1
        self.sent.append(
            SentSms(sms.gateway_id, sms.port, sms.sender_iccid, to, sms.text, sms.tid, fate)
        )

    async def text_from_outside(self, sender_number: str, to: str, text: str) -> str:
        """An SMS from outside the fleet (a service sending a code) reaching ``to``; its fate."""
        fate = await self._arrive(None, to, text, from_number=sender_number)
        self.counts[fate] += 1
        return fate

    async def _arrive(
        self, sender: str | None, to: str, text: str, *, from_number: str | None = None
    ) -> str:
        receiver = self.ports.sim_with_number(to)
        if receiver is None:
            return "external"
        where = self.ports.port_of(receiver)
        if where is None or self._bridge is None:
            return "undeliverable"
        gateway_id, port = where
        if from_number is None:
            from_number = (self.ports.number_of(sender) if sender else None) or UNKNOWN_SENDER
        try:
            await self._pusher(gateway_id).push_sms(port, from_number, to, text, iccid=receiver)
        except (BridgeRefused, httpx.HTTPError) as err:
            log.warning("sandbox_sms_push_failed", to=to, error=str(err))
            return "undeliverable"
        return "delivered"

    def _pusher(self, gateway_id: str) -> SandboxGateway:
        url, secret = self._bridge or ("", "")
        if gateway_id not in self._pushers:
            self._pushers[gateway_id] = SandboxGateway(url, gateway_id, secret, client=self._http)
        return self._pushers[gateway_id]

    async def drain(self) -> None:
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    # --- status ----------------------------------------------------------------------------
    async def push_status(self, gateway_id: str | None = None) -> None:
        """Each gateway's (or one's) dev-status to the bridge, as devices push it periodically."""
        if self._bridge is None:
            return
        url, secret = self._bridge
        for gw in [gateway_id] if gateway_id else list(self.ports.sims):
            push = self.ports.dev_status(gw)
            response = await self._http.post(f"{url}/s/{secret}/status", json=push)
            self.counts["status_pushed" if response.status_code == 200 else "status_refused"] += 1

    async def run_status_pushes(self, interval_s: float) -> None:
        """The periodic pushes, for the composition root's supervised loops."""
        while True:
            with contextlib.suppress(httpx.HTTPError):
                await self.push_status()
            await asyncio.sleep(interval_s)

    async def aclose(self) -> None:
        for job in list(self._in_flight):
            job.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._http.aclose()

    # --- the HTTP API ----------------------------------------------------------------------
    def authorize(self, request: Request) -> JSONResponse | str | None:
        """None if the query credentials are right; else the refusal (a response or status)."""
        if "authorization" in request.headers:
            self.counts["basic_auth_refused"] += 1
            body = {"code": 401, "reason": "credentials go in the query, not in a header"}
            return JSONResponse(body, 401)
        if request.query_params.get("username") != self.username:
            return "1 Invalid User"
        if request.query_params.get("password") != self.password:
            return "14 Unauthorized"
        return None

    async def send_sms(self, request: Request, gateway_id: str) -> JSONResponse:
        self.counts["send_requests"] += 1
        refused = self.authorize(request)
        if isinstance(refused, JSONResponse):
            return refused
        if self._fault("flaky_5xx"):
            return JSONResponse({"code": 500, "reason": "Server Error"}, 500)
        if self._fault("echoing"):
            return JSONResponse({"code": 500, "reason": f"Server Error for {request.url.query}"})
        body = await request.json()
        tasks = [t for t in body.get("tasks") or [] if isinstance(t, dict)]
        statuses = [
            {"tid": t.get("tid"), "status": refused or self.submit(gateway_id, t)} for t in tasks
        ]
        answer = {"code": 200, "reason": "OK", "type": "task-status", "status": statuses}
        return JSONResponse(answer)

    async def get_status(self, request: Request, gateway_id: str) -> JSONResponse:
        refused = self.authorize(request)
        if isinstance(refused, JSONResponse):
            return refused
        if refused is not None:
            return JSONResponse({"code": 401, "reason": refused})
        return JSONResponse({"code": 200, "reason": "OK", **self.ports.dev_status(gateway_id)})


def create_gateways_sandbox(network: GatewayNetwork) -> FastAPI:
    """The gateways as an ASGI app; the network outlives it (its owner calls ``aclose``)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await network.drain()

    app = FastAPI(title="Skyline gateways sandbox", lifespan=lifespan)
    app.state.network = network
    unknown = JSONResponse({"code": 404, "reason": "no such gateway"}, 404)
    default = network.ports.default_gateway

    @app.post("/goip_post_sms.html")
    @app.post("/gw/{gateway_id}/goip_post_sms.html")
    async def send_sms(request: Request, gateway_id: str = default) -> JSONResponse:
        if gateway_id not in network.ports.sims:
            return unknown
        return await network.send_sms(request, gateway_id)

    @app.get("/goip_get_status.html")
    @app.get("/gw/{gateway_id}/goip_get_status.html")
    async def get_status(request: Request, gateway_id: str = default) -> JSONResponse:
        if gateway_id not in network.ports.sims:
            return unknown
        return await network.get_status(request, gateway_id)

    @app.get("/_sandbox/stats")
    async def stats() -> dict[str, Any]:
        return {"mode": network.mode, "counts": dict(network.counts)}

    return app
