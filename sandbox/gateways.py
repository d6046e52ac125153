"""Simulated Skyline gateways around the Helix sandbox's world; ``sandbox.gateway_api`` serves
their HTTP API (EXTERNAL_APIS §1.2 send SMS, §1.3 port status) on loopback.

``GatewayNetwork`` holds the gateways (``ports``: which SIM sits where) and what happens to a
sent SMS: it arrives on the port of the SIM that has the number *now* according to the carrier
(``HelixWorld``) — after a rotation the new number reaches the same SIM — and is pushed to the
bridge as a device pushes it (``SandboxGateway``: receiving port, ICCID appended). Numbers no
SIM of ours has leave the network (``external``). ``push_status`` sends each gateway's
``dev-status``; ``push_changes`` a ``port-status`` for every port that changed, as devices do.

Each gateway is its own device: its own loopback address (``hosts``: 127.0.0.1, 127.0.0.2, …
by default), from which it also pushes, and its own credentials (``credentials``). Tasks may
name the port ``from`` or ``port``.

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
import socket
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import httpx
import structlog

from events.types import normalize_e164
from sandbox.gateway_ports import REGISTERED, PortRegistry
from sandbox.helix_world import HelixWorld
from sandbox.skyline import DEFAULT_GATEWAY_ID, BridgeRefused, SandboxGateway

GatewayMode = Literal["happy", "lossy", "slow", "busy", "flaky_5xx", "echoing"]
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
        hosts: Mapping[str, str] | None = None,
    ) -> None:
        self.username, self.password = username, password
        self.ports = PortRegistry(carrier, gateways, auto_insert=auto_insert)
        # the first gateway answers to (username, password); each other one has its own password
        self.credentials = {
            g: (username, password if n == 0 else f"{password}-gw{n + 1}")
            for n, g in enumerate(self.ports.sims)
        }
        self.hosts = {
            g: (hosts or {}).get(g) or _loopback(n + 1) for n, g in enumerate(self.ports.sims)
        }
        self._last_rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.counts: Counter[str] = Counter()
        self.sent: list[SentSms] = []
        self.tasks: list[dict[str, Any]] = []  # every task as received, for wire-format checks
        self._tids: dict[str, set[int]] = {g: set() for g in self.ports.sims}
        self._bridge: tuple[str, str] | None = None
        self._pushers: dict[str, SandboxGateway] = {}
        # each gateway pushes from its own address, as separate devices do
        self._http = {
            g: httpx.AsyncClient(
                timeout=10.0, transport=httpx.AsyncHTTPTransport(local_address=host)
            )
            for g, host in self.hosts.items()
        }
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
        return "16 Too Many Task" if self.fault("busy") else None

    def fault(self, mode: GatewayMode) -> bool:
        """Whether this task or request meets a fault of ``mode`` (until ``limit`` have)."""
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
            self._pushers[gateway_id] = SandboxGateway(
                url, gateway_id, secret, client=self._http[gateway_id]
            )
        return self._pushers[gateway_id]

    async def drain(self) -> None:
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    # --- status ----------------------------------------------------------------------------
    async def push_status(self, gateway_id: str | None = None) -> None:
        """Each gateway's (or one's) dev-status to the bridge, as devices push it periodically."""
        if self._bridge is None:
            return
        for gw in [gateway_id] if gateway_id else list(self.ports.sims):
            push = self.ports.dev_status(gw)
            if await self._push_status(gw, push):
                self._last_rows.update({(gw, r["port"]): r for r in push["status"]})

    async def push_changes(self) -> int:
        """A ``port-status`` for every port whose state, SIM or number changed since it was last
        pushed (a SIM seated, registered, given a number); returns how many were pushed."""
        if self._bridge is None:
            return 0
        pushed = 0
        for gw in list(self.ports.sims):
            for row in self.ports.port_rows(gw):
                if self._last_rows.get((gw, row["port"])) == row:
                    continue
                if await self._push_status(gw, {"type": "port-status", "mac": gw, **row}):
                    self._last_rows[(gw, row["port"])] = row
                    pushed += 1
        return pushed

    async def _push_status(self, gateway_id: str, push: dict[str, Any]) -> bool:
        url, secret = self._bridge or ("", "")
        response = await self._http[gateway_id].post(f"{url}/s/{secret}/status", json=push)
        ok = response.status_code == 200
        self.counts["status_pushed" if ok else "status_refused"] += 1
        return ok

    async def run_status_pushes(self, interval_s: float, change_poll_s: float = 0.5) -> None:
        """The pushes of running devices, for the composition root's supervised loops: every
        port's status each ``interval_s``, and each change within ``change_poll_s``."""
        loop = asyncio.get_running_loop()
        next_full = loop.time()
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if loop.time() >= next_full:
                    await self.push_status()
                    next_full = loop.time() + interval_s
                await self.push_changes()
            await asyncio.sleep(change_poll_s)

    async def aclose(self) -> None:
        for job in list(self._in_flight):
            job.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        for http in self._http.values():
            await http.aclose()


def _loopback(n: int) -> str:
    """127.0.0.n where the system routes all of 127/8 to loopback (Linux), else 127.0.0.1."""
    try:
        with socket.socket() as sock:
            sock.bind((f"127.0.0.{n}", 0))
    except OSError:
        return "127.0.0.1"
    return f"127.0.0.{n}"
