"""Helix carrier simulator: a real HTTP server speaking EXTERNAL_APIS §2 on loopback.

``HelixWorld`` (``sandbox.helix_world``) is the carrier's state; ``create_helix_sandbox(world,
mode)`` serves it. Modes name the world a test runs in, like Jasmin's simulators: ``happy``,
``rate_limited``, ``flaky_5xx``, ``slow``, ``timeouts``, ``rejects_activation`` and ``echoing``
(a 400 whose message echoes the request: its headers, bearer token included, and its body);
``HelixFaults`` tunes how often and how hard, with a seeded random.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sandbox.helix_world import REASON_CODES, CarrierError, HelixWorld

HelixMode = Literal[
    "happy", "rate_limited", "flaky_5xx", "slow", "timeouts", "rejects_activation", "echoing"
]
HELIX_MODES: tuple[HelixMode, ...] = get_args(HelixMode)
CarrierCall = Callable[[HelixWorld, Request], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
API_OPERATIONS = frozenset({"activation", "details", "mdn_change", "status_change", "reason_codes"})


@dataclass
class HelixFaults:
    fraction: float = 0.3  # share of eligible calls that fail in the chosen mode
    limit: int | None = None  # at most this many faults (fraction=1, limit=2: the first two)
    operations: frozenset[str] = API_OPERATIONS  # add "token" to hit the token endpoint too
    retry_after_s: int = 1
    latency_s: float = 0.2
    hang_s: float = 30.0
    hang_after_processing: bool = False  # timeouts: the work is done, only the answer is lost
    seed: int = 0


async def _echo(request: Request) -> str:
    headers = "; ".join(f"{k}: {v}" for k, v in request.headers.items())
    body = (await request.body()).decode("utf-8", "replace")
    return f"Bad Request for {request.method} {request.url} [{headers}] {body}"


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class HelixSandbox:
    """The served behaviour: which fault mode is on (tests may switch it) and its dice."""

    world: HelixWorld
    mode: HelixMode = "happy"
    faults: HelixFaults = field(default_factory=HelixFaults)
    faults_injected: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.faults.seed)

    def switch(self, mode: HelixMode, faults: HelixFaults | None = None) -> None:
        """Changes the world a running server simulates; counts and dice start afresh."""
        self.mode, self.faults, self.faults_injected = mode, faults or HelixFaults(), 0
        self.rng = random.Random(self.faults.seed)

    def _roll(self, operation: str) -> bool:
        eligible = operation in self.faults.operations and (
            self.mode != "rejects_activation" or operation == "activation"
        )
        if not eligible or self.mode in ("happy", "slow"):
            return False
        if self.faults.limit is not None and self.faults_injected >= self.faults.limit:
            return False
        if self.rng.random() >= self.faults.fraction:
            return False
        self.faults_injected += 1
        return True

    async def _hang(self, request: Request) -> None:
        # past the client's timeout; ends once the client gave up, so the server stops quickly
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.faults.hang_s):
                while (await request.receive())["type"] != "http.disconnect":
                    pass

    async def handle(
        self, request: Request, operation: str, work: Callable[[], Awaitable[Response]]
    ) -> Response:
        self.world.calls[operation] += 1
        if self.mode == "slow" and operation in self.faults.operations:
            await asyncio.sleep(self.faults.latency_s)
        fault = self._roll(operation)
        if fault and self.mode == "rate_limited":
            error = "too_many_attempts" if operation == "token" else "too_many_requests"
            return _json(
                429,
                {"error": error, "message": "Rate limit exceeded"},
                {"Retry-After": str(self.faults.retry_after_s)},
            )
        if fault and self.mode == "flaky_5xx":
            return _json(self.rng.choice([500, 502, 503]), {"errorMessage": "Internal error"})
        if fault and self.mode == "timeouts" and not self.faults.hang_after_processing:
            await self._hang(request)
            return _json(504, {"errorMessage": "Gateway timeout"})
        if fault and self.mode == "rejects_activation":
            return _json(400, {"errorMessage": "Address verification failed"})
        if fault and self.mode == "echoing":
            return _json(400, {"errorMessage": await _echo(request)})
        if operation != "token" and not self._authorized(request):
            return _json(401, {"message": "Unauthorized"})
        try:
            response = await work()
        except CarrierError as err:
            response = _json(err.status, err.body)
        except (ValueError, TypeError, KeyError) as err:  # a body the carrier cannot read
            response = _json(400, {"errorMessage": f"Malformed request: {type(err).__name__}"})
        if fault and self.mode == "timeouts":
            await self._hang(request)
        return response

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.world.token_valid(token.strip())

    async def token(self, request: Request) -> Response:
        self.world.token_requests += 1
        if request.headers.get("content-type", "").startswith("application/json"):
            grant = dict(await request.json())
        else:
            grant = {k: str(v) for k, v in (await request.form()).items()}
        if grant.get("grant_type") != "password":
            return _json(400, {"error": "unsupported_grant_type"})
        if grant.get("client_id") != self.world.client_id:
            return _json(401, {"error": "access_denied", "error_description": "Unauthorized"})
        if (grant.get("username"), grant.get("password")) != (
            self.world.username,
            self.world.password,
        ):
            return _json(
                403, {"error": "invalid_grant", "error_description": "Wrong email or password."}
            )
        body = {
            "access_token": self.world.issue_token(),
            "scope": "read:subscribers write:subscribers",
            "expires_in": self.world.token_ttl_s,
            "token_type": "Bearer",
        }
        return _json(200, body)


def create_helix_sandbox(
    world: HelixWorld | None = None, mode: HelixMode = "happy", faults: HelixFaults | None = None
) -> FastAPI:
    """The carrier as an ASGI app; the token URL is ``<base>/oauth/token``."""
    sandbox = HelixSandbox(world or HelixWorld(), mode, faults or HelixFaults())
    app = FastAPI(title="Helix sandbox")
    app.state.sandbox = sandbox
    _carrier_routes(app, sandbox)
    _admin_routes(app, sandbox)
    return app


def _carrier_routes(app: FastAPI, sandbox: HelixSandbox) -> None:
    """The carrier's API as simfleet calls it, each call through the sandbox's fault mode."""

    @app.post("/oauth/token")
    async def token(request: Request) -> Response:
        return await sandbox.handle(request, "token", lambda: sandbox.token(request))

    for method, path, operation, call in CARRIER_CALLS:
        app.add_api_route(
            path, _served(sandbox, operation, call), methods=[method], name=call.__name__
        )


def _served(sandbox: HelixSandbox, operation: str, call: CarrierCall) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return await sandbox.handle(request, operation, lambda: call(sandbox.world, request))

    return endpoint


async def activate(world: HelixWorld, request: Request) -> Response:
    sub = world.activate(dict(await request.json()))
    return _json(201, {"mobilitySubscriptionId": sub.subscription_id})


async def details(world: HelixWorld, request: Request) -> Response:
    body = await request.json()
    queries = body if isinstance(body, list) else [body]
    return _json(200, [row for q in queries for row in world.details(dict(q))])


async def change_mdn(world: HelixWorld, request: Request) -> Response:
    body = dict(await request.json())
    return _json(200, world.change_mdn(body.get("mobilitySubscriptionId")))


async def change_status(world: HelixWorld, request: Request) -> Response:
    body = await request.json()
    if not isinstance(body, list):
        raise CarrierError(400, {"errorMessage": "Body must be an array"})
    outcomes = [world.change_status(dict(item)) for item in body]
    fulfilled = [entry for ok, entry in outcomes if ok]
    return _json(200, {"fulfilled": fulfilled, "rejected": [e for ok, e in outcomes if not ok]})


async def reason_codes(_world: HelixWorld, _request: Request) -> Response:
    rows = [
        {"reasonCode": c, "reasonCodeId": i, "subscriberState": s, "description": s}
        for s, (c, i) in REASON_CODES.items()
    ]
    return _json(200, rows)


# method, path, operation (what faults may hit), what the carrier does
CARRIER_CALLS: tuple[tuple[str, str, str, CarrierCall], ...] = (
    ("POST", "/api/mobility-activation/activate", "activation", activate),
    ("POST", "/api/mobility-subscriber/details", "details", details),
    ("PATCH", "/api/mobility-subscriber/ctn", "mdn_change", change_mdn),
    ("PATCH", "/api/mobility-subscriber/status", "status_change", change_status),
    ("GET", "/api/mobility-subscriber/reason-codes", "reason_codes", reason_codes),
)


def _admin_routes(app: FastAPI, sandbox: HelixSandbox) -> None:
    """For demos and e2e tests that run the sandbox in another process: never faulty."""
    world_ = sandbox.world

    @app.get("/_sandbox/stats")
    async def stats() -> dict[str, Any]:
        return world_.stats()

    @app.get("/_sandbox/subscribers/{iccid}")
    async def subscriber(iccid: str) -> Response:
        sub = world_.subscriber_by_iccid(iccid)
        return _json(404, {}) if sub is None else _json(200, sub.as_details(None))

    @app.post("/_sandbox/subscribers/{iccid}/mdn")
    async def force_mdn(iccid: str, request: Request) -> Response:
        world_.force_mdn(iccid, str((await request.json())["number"]))
        return _json(200, {"ok": True})

    @app.put("/_sandbox/mode")
    async def set_mode(request: Request) -> Response:
        wanted = str((await request.json())["mode"])
        for known in HELIX_MODES:
            if known == wanted:
                sandbox.switch(known, sandbox.faults)
                return _json(200, {"mode": known})
        return _json(400, {"error": f"unknown mode {wanted}"})


def sandbox_of(app: FastAPI) -> HelixSandbox:
    sandbox: HelixSandbox = app.state.sandbox
    return sandbox
