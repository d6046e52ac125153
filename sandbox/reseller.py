"""A reseller's webhook receiver on loopback: verifies Standard Webhooks signatures with the
public ``standardwebhooks`` library (not our signer) and records every delivery attempt.

``POST /hooks/{endpoint_id}`` answers according to the endpoint's mode; ``GET`` lists what it
recorded (demo, dashboard). Modes, settable per endpoint at runtime:

- ``ok``: 200 if the signature verifies (or no secret is registered), else 401;
- ``fail_500``: always 500;  ``500_then_ok``: the first N attempts 500, then ``ok``;
- ``hang``: no answer until the client gives up (or ``hang_s``), as a stuck server would;
- ``gone_410``: 410 (the reseller asks us to stop);
- ``bad_signature_check``: 401 as if verification failed (their secret is stale).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

ReceiverMode = Literal["ok", "fail_500", "500_then_ok", "hang", "gone_410", "bad_signature_check"]

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ReceivedDelivery:
    endpoint_id: str
    webhook_id: str | None
    timestamp: str | None
    payload: Any
    signature_valid: bool | None  # None: no secret registered for the endpoint
    status_code: int
    received_at: datetime

    @property
    def accepted(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass
class _Endpoint:
    mode: ReceiverMode
    failures: int = 2
    attempts: int = 0
    verifiers: list[Webhook] = field(default_factory=list)


class ReceiverState:
    """What the receiver saw, and how each endpoint behaves; tests and the demo drive it."""

    def __init__(self, mode: ReceiverMode = "ok", *, hang_s: float = 30.0) -> None:
        self.default_mode: ReceiverMode = mode
        self.hang_s = hang_s
        self._endpoints: dict[str, _Endpoint] = {}
        self._deliveries: list[ReceivedDelivery] = []
        self._changed = asyncio.Event()

    def _endpoint(self, endpoint_id: str) -> _Endpoint:
        return self._endpoints.setdefault(endpoint_id, _Endpoint(self.default_mode))

    def register(self, endpoint_id: str, secret: str) -> None:
        """Adds a secret the endpoint accepts (register two to model a rotation)."""
        self._endpoint(endpoint_id).verifiers.append(Webhook(secret))

    def set_mode(self, endpoint_id: str, mode: ReceiverMode, *, failures: int = 2) -> None:
        endpoint = self._endpoint(endpoint_id)
        endpoint.mode, endpoint.failures, endpoint.attempts = mode, failures, 0

    def received(self, endpoint_id: str | None = None) -> list[ReceivedDelivery]:
        """Every attempt, answered or not, oldest first."""
        return [d for d in self._deliveries if endpoint_id in (None, d.endpoint_id)]

    def ids(self, endpoint_id: str | None = None) -> list[str]:
        """webhook-ids of the deliveries answered 2xx (what the reseller really received)."""
        return [d.webhook_id or "" for d in self.received(endpoint_id) if d.accepted]

    async def wait_for(
        self,
        n: int,
        timeout: float = 5.0,  # noqa: ASYNC109 - the bound reads better inline in a test
        *,
        endpoint_id: str | None = None,
    ) -> list[ReceivedDelivery]:
        """Waits until ``n`` accepted deliveries arrived; raises `TimeoutError` otherwise."""
        async with asyncio.timeout(timeout):
            while len(accepted := [d for d in self.received(endpoint_id) if d.accepted]) < n:
                await self._changed.wait()
        return accepted

    def _record(self, delivery: ReceivedDelivery) -> None:
        self._deliveries.append(delivery)
        # wake every waiter once, then arm a fresh event for the next delivery
        self._changed.set()
        self._changed = asyncio.Event()

    async def handle(
        self,
        endpoint_id: str,
        body: bytes,
        headers: dict[str, str],
        disconnected: Callable[[], Awaitable[bool]],
    ) -> int:
        """Verifies, answers per the endpoint's mode and records the attempt; returns the status."""
        endpoint = self._endpoint(endpoint_id)
        valid = _verify(endpoint.verifiers, body, headers)
        status = await self._answer(endpoint, valid, disconnected)
        self._record(
            ReceivedDelivery(
                endpoint_id=endpoint_id,
                webhook_id=headers.get("webhook-id"),
                timestamp=headers.get("webhook-timestamp"),
                payload=_parse(body),
                signature_valid=valid,
                status_code=status,
                received_at=datetime.now(UTC),
            )
        )
        return status

    async def _answer(
        self, endpoint: _Endpoint, valid: bool | None, disconnected: Callable[[], Awaitable[bool]]
    ) -> int:
        endpoint.attempts += 1
        match endpoint.mode:
            case "fail_500":
                return 500
            case "500_then_ok" if endpoint.attempts <= endpoint.failures:
                return 500
            case "gone_410":
                return 410
            case "bad_signature_check":
                return 401
            case "hang":
                await _hang(disconnected, self.hang_s)
                return 504
        return 401 if valid is False else 200


def _verify(verifiers: list[Webhook], body: bytes, headers: dict[str, str]) -> bool | None:
    if not verifiers:
        return None
    for verifier in verifiers:
        try:
            verifier.verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError):
            continue
        return True
    return False


async def _hang(disconnected: Callable[[], Awaitable[bool]], limit_s: float) -> None:
    # poll for the client's disconnect so a hung request ends with its client and never
    # holds the server's graceful shutdown
    deadline = time.monotonic() + limit_s
    # (ASGI offers no disconnect event to await once the body has been read)
    while time.monotonic() < deadline and not await disconnected():  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def _read_body(request: Request) -> bytes | None:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def create_reseller_receiver(
    secrets: dict[str, str] | None = None, mode: ReceiverMode = "ok"
) -> tuple[FastAPI, ReceiverState]:
    state = ReceiverState(mode)
    for endpoint_id, secret in (secrets or {}).items():
        state.register(endpoint_id, secret)
    app = FastAPI(title="simfleet sandbox: reseller webhook receiver")

    @app.post("/hooks/{endpoint_id}")
    async def receive(endpoint_id: str, request: Request) -> JSONResponse:
        body = await _read_body(request)
        if body is None:
            return JSONResponse({"error": "body too large"}, status_code=413)
        status = await state.handle(
            endpoint_id, body, dict(request.headers), request.is_disconnected
        )
        return JSONResponse({"ok": status == 200}, status_code=status)

    @app.get("/hooks/{endpoint_id}")
    async def deliveries(endpoint_id: str) -> list[dict[str, Any]]:
        return [
            {**asdict(d), "received_at": d.received_at.isoformat()}
            for d in state.received(endpoint_id)
        ]

    return app, state
