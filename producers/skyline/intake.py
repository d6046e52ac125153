"""What every gateway push goes through before and after its parser: the gateway secret, the
body's size limit, publishing the parsed events (200 only once the broker acknowledged them all)
and keeping a refused push verbatim, secret removed, on ``gateway.rejected``."""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from events.envelope import new_ref
from events.gateway import GatewayPayloadRejected
from infra.bus import BrokerUnavailable, Bus
from infra.clock import Clock
from infra.metrics import PUSHES_REJECTED, SMS_INGESTED
from producers.skyline.arrivals import SmsArrivals
from producers.skyline.parsed_push import PRODUCER, ParsedPush, gateway_id_from
from producers.skyline.push_fields import PushRejected

SECRET_HEADER = "x-gateway-secret"  # noqa: S105  (a header name, not a secret)
RETRY_AFTER_S = 5
_HIDDEN_HEADERS = frozenset({SECRET_HEADER, "authorization", "proxy-authorization", "cookie"})
_HIDDEN_QUERY = frozenset({"secret", "password"})

log = structlog.get_logger("simfleet.gateway_bridge")


class NotAuthenticated(Exception):
    """No valid gateway secret in the path, header or query."""


@dataclass(frozen=True)
class Bridge:
    """What the routes need; one per app, kept in ``app.state.bridge``."""

    secret: str
    max_body_bytes: int
    bus: Bus
    clock: Clock
    secret_in_url: bool = True
    arrivals: SmsArrivals | None = None  # None: SMS published as parsed (benchmarks, bare tests)

    def authenticate(self, request: Request) -> None:
        offered: tuple[str | None, ...] = (request.headers.get(SECRET_HEADER),)
        if self.secret_in_url:
            offered += (request.path_params.get("secret"), request.query_params.get("secret"))
        expected = self.secret.encode()
        if not expected or not any(
            hmac.compare_digest(o.encode(), expected) for o in offered if o is not None
        ):
            raise NotAuthenticated

    async def read_body(self, request: Request) -> bytes:
        """The body, refused past the limit both as declared and as streamed (chunked)."""
        request.state.raw_body = b""  # nothing of an oversize body is kept
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
        request.state.raw_body = body = b"".join(chunks)
        return body

    def _too_large(self) -> PushRejected:
        return PushRejected(f"body larger than {self.max_body_bytes} bytes", 413)

    async def publish(self, push: ParsedPush) -> Response:
        """Publishes the push's events; the answer is a ``PushAccepted`` (as documented), encoded
        here: FastAPI's response-model validation was a tenth of the bridge's cost per push."""
        if self.arrivals is not None:
            push = await self.arrivals.settle(push)
        await self.bus.emit_many(push.events)  # raises BrokerUnavailable; answered as 503
        SMS_INGESTED.inc(len(push.sms))
        # debug: the events themselves are the record of what arrived (and are archived)
        log.debug(
            "gateway_push_accepted",
            sms=len(push.sms),
            reports=len(push.reports),
            statuses=len(push.statuses),
        )
        answer = {
            "accepted": len(push.sms),
            "reports": len(push.reports),
            "statuses": len(push.statuses),
            "ids": [event.id for event in push.events],
        }
        return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json")

    async def reject(self, request: Request, err: PushRejected) -> JSONResponse:
        """Keeps the payload on gateway.rejected, then answers; 503 if it cannot be kept."""
        now = self.clock.now()
        gateway_id = gateway_id_from(request.query_params)
        event = GatewayPayloadRejected.create(
            producer=PRODUCER,
            time=now,
            ref=new_ref(),
            gateway_id=gateway_id,
            reason=err.reason,
            status_code=err.status_code,
            method=request.method,
            path=self._scrub(request.url.path),
            query=self._scrub(
                urlencode(_without(request.query_params.multi_items(), _HIDDEN_QUERY))
            ),
            headers={
                k: self._scrub(v) for k, v in _without(request.headers.items(), _HIDDEN_HEADERS)
            },
            body_base64=base64.b64encode(getattr(request.state, "raw_body", b"")).decode(),
            received_at=now,
        )
        try:
            await self.bus.emit(event)
        except BrokerUnavailable as down:
            return unavailable(down)
        PUSHES_REJECTED.labels(str(err.status_code)).inc()
        log.warning(
            "gateway_push_rejected",
            gateway_id=gateway_id,
            status=err.status_code,
            reason=err.reason,
            event_id=event.id,
        )
        return JSONResponse({"error": err.reason}, status_code=err.status_code)

    def _scrub(self, text: str) -> str:
        """The secret removed wherever else it shows (the /s/<secret>/ path, a Referer …)."""
        return text.replace(self.secret, "***") if self.secret else text


def _without(items: Any, hidden: frozenset[str]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in items if k.lower() not in hidden]


def unavailable(err: BrokerUnavailable) -> JSONResponse:
    log.warning("gateway_push_broker_unavailable", error=str(err))
    return JSONResponse(
        {"error": "event store unavailable, retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def bridge_of(request: Request) -> Bridge:
    return cast(Bridge, request.app.state.bridge)


def authenticated(request: Request) -> Bridge:
    """The app's bridge, once the request showed the gateway secret. A plain call rather than
    a FastAPI dependency: dependency resolution showed up in the bench (bench/bench_bridge.py)."""
    bridge = bridge_of(request)
    bridge.authenticate(request)
    return bridge
