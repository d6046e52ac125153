"""Gateway bridge: Skyline HTTP pushes → events on ``sms.inbound`` and ``gateway.status``.

Routes (each also under ``/s/<secret>/`` for gateways that only let you set a URL):
  POST /sms          the gateway's JSON push (recv-sms, dev-status, port-status) or its
                     "SMS to HTTP" text push, told apart by content type and body shape
  POST /sms/simple   simfleet's generic JSON: {"to", "from", "body", "received_at", ...}
  POST /status       dev-status / port-status (the same parser: a gateway with one URL is fine)
  GET  /healthz      liveness, no secret

Nothing else is on this port: metrics, readiness and this API's description (``/bridge/docs``)
are on the process's ops port.

A gateway's push URL: ``http://bridge/s/<GATEWAY_SECRET>/sms?gateway_id=<its MAC>`` (the JSON
push does not name its gateway). The secret is also accepted as header ``x-gateway-secret`` or
query ``?secret=``; an empty GATEWAY_SECRET refuses every push (401): it must be set. With
``SIMFLEET_SECRETS_IN_URLS=false`` only the header counts (no ``/s/…`` routes, ``?secret=``
ignored): URLs end up in access logs and proxies.

Before publishing, an SMS without a receiving number gets its SIM's, and one without a time of
its own gets its first arrival's (``producers.skyline.arrivals``: a gateway's retry is the same SMS).

Contract: 200 only after Kafka acknowledged every event (acks=all). Broker unreachable → 503 +
``Retry-After`` (the gateway retries; ids are deterministic, so a retry is a harmless duplicate).
A push that cannot be parsed → 400/422 ``{"error": reason}``, kept verbatim (secret removed) on
``gateway.rejected`` first. Bodies above ``bridge_max_body_bytes`` → 413.
"""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from events.envelope import new_ref
from events.gateway import GatewayPayloadRejected
from infra.clock import Clock
from infra.http import NO_TELEMETRY
from infra.kafka import BrokerUnavailable, Bus
from infra.metrics import PUSHES_REJECTED, SMS_INGESTED, RequestMetrics, bridge_routes_known
from infra.openapi import Contract, complete
from infra.settings import Settings
from producers.skyline.arrivals import SmsArrivals
from producers.skyline.push import (
    PRODUCER,
    ParsedPush,
    gateway_id_from,
    parse_http_push,
    parse_json_push,
    parse_simple_push,
)
from producers.skyline.push_fields import PushRejected
from producers.skyline.wire import (
    WIRE_MODELS,
    DevStatusPush,
    PortStatusPush,
    RecvSmsPush,
    SimpleSms,
)

SECRET_HEADER = "x-gateway-secret"  # noqa: S105  (a header name, not a secret)
RETRY_AFTER_S = 5
_HIDDEN_HEADERS = frozenset({SECRET_HEADER, "authorization", "proxy-authorization", "cookie"})
_HIDDEN_QUERY = frozenset({"secret", "password"})

log = structlog.get_logger("simfleet.gateway_bridge")


class PushAccepted(BaseModel):
    accepted: int = Field(description="SMS published to sms.inbound")
    reports: int = Field(description="delivery reports published to sms.inbound")
    statuses: int = Field(description="status reports published to gateway.status")
    ids: list[str] = Field(description="event ids, deterministic: the same push gives the same ids")


class PushError(BaseModel):
    error: str


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
        except BrokerUnavailable as unavailable:
            return _unavailable(unavailable)
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


def _unavailable(err: BrokerUnavailable) -> JSONResponse:
    log.warning("gateway_push_broker_unavailable", error=str(err))
    return JSONResponse(
        {"error": "event store unavailable, retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _bridge_of(request: Request) -> Bridge:
    return cast(Bridge, request.app.state.bridge)


def authenticated(request: Request) -> Bridge:
    """The app's bridge, once the request showed the gateway secret. A plain call rather than
    a FastAPI dependency: dependency resolution showed up in the bench (bench/bench_bridge.py)."""
    bridge = _bridge_of(request)
    bridge.authenticate(request)
    return bridge


def _is_json(request: Request, body: bytes) -> bool:
    # the gateway's JSON push says so; some firmware sends it as text/plain anyway
    return "json" in request.headers.get("content-type", "") or body.lstrip()[:1] in (b"{", b"[")


# --- OpenAPI: the routes read raw bytes (size limit, verbatim rejects), so bodies are declared --


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": "string"}}


_TEXT_PUSH = {"type": "string", "description": "header lines, a blank line, then the SMS text"}
_SMS_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [_ref(RecvSmsPush), _ref(DevStatusPush), _ref(PortStatusPush)]}
            },
            "text/plain": {"schema": _TEXT_PUSH},
            "application/octet-stream": {"schema": _TEXT_PUSH},
        },
    },
    "parameters": [
        _query("port", "text push: receiving port (61A or 61.01)"),
        _query("sender", "text push: originating number"),
        _query("mac", "gateway MAC (text push)"),
        _query("iccid", "text push: receiving SIM"),
        _query("gateway_id", "gateway id when the push has no mac"),
    ],
}
_SIMPLE_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [_ref(SimpleSms), {"type": "array", "items": _ref(SimpleSms)}]}
            }
        },
    }
}
_STATUS_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [_ref(DevStatusPush), _ref(PortStatusPush)]}}
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": PushError, "description": text}
    for code, text in {
        400: "malformed body (kept on gateway.rejected)",
        401: "missing or wrong gateway secret",
        413: "body too large",
        422: "body does not fit the format (kept on gateway.rejected)",
        503: "broker unavailable: retry after Retry-After seconds",
    }.items()
}

_SECRET_SCHEMES = {
    "gatewaySecretHeader": {
        "type": "apiKey",
        "in": "header",
        "name": SECRET_HEADER,
        "description": "GATEWAY_SECRET (unless SIMFLEET_SECRETS_IN_URLS=false, also accepted as the "
        "first path segment: /s/<secret>/sms)",
    },
    "gatewaySecretQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "secret",
        "description": "GATEWAY_SECRET, for gateways that can only be given a URL",
    },
}
CONTRACT = Contract(
    schemes=_SECRET_SCHEMES,
    security=lambda path, _method: (
        [] if path == "/healthz" else [{name: []} for name in _SECRET_SCHEMES]
    ),
    refusals=lambda _path, _method: {},  # each push route declares its own (_ERRORS)
    tags={"pushes": "what Skyline gateways send"},
)

# --- routes: authenticate → read → parse → publish ---------------------------------


async def receive_push(request: Request) -> Response:
    bridge = authenticated(request)
    body = await bridge.read_body(request)
    now = bridge.clock.now()
    host = _pushed_from(request)
    if _is_json(request, body):
        gateway = gateway_id_from(request.query_params)
        return await bridge.publish(parse_json_push(body, gateway_id=gateway, now=now, host=host))
    return await bridge.publish(parse_http_push(request.query_params, body, now=now, host=host))


async def receive_simple(request: Request) -> Response:
    bridge = authenticated(request)
    body = await bridge.read_body(request)
    gateway = gateway_id_from(request.query_params)
    push = parse_simple_push(body, now=bridge.clock.now(), gateway_id=gateway)
    return await bridge.publish(push)


async def receive_status(request: Request) -> Response:
    bridge = authenticated(request)
    body = await bridge.read_body(request)
    gateway = gateway_id_from(request.query_params)
    push = parse_json_push(
        body, gateway_id=gateway, now=bridge.clock.now(), host=_pushed_from(request)
    )
    return await bridge.publish(push)


def _pushed_from(request: Request) -> str | None:
    """The address a Skyline push came from: where that gateway's own API is reached, unless
    SK_GATEWAYS says otherwise (a gateway behind NAT)."""
    return request.client.host if request.client else None


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


PUSH_ROUTES = (
    ("/sms", receive_push, _SMS_DOC, "Gateway push: received SMS or status"),
    ("/sms/simple", receive_simple, _SIMPLE_DOC, "Generic inbound SMS"),
    ("/status", receive_status, _STATUS_DOC, "Gateway port status"),
)


def _add_push_routes(app: FastAPI, prefix: str = "", *, documented: bool = True) -> None:
    """Routes declared on the app itself: an included router is matched through a wrapper
    per request, a tenth of the bridge's CPU per push (bench/bench_bridge.py, profiled)."""
    for path, endpoint, doc, summary in PUSH_ROUTES:
        app.add_api_route(
            prefix + path,
            endpoint,
            methods=["POST"],
            response_model=PushAccepted,
            responses=_ERRORS,
            openapi_extra=doc,
            summary=summary,
            tags=["pushes"],
            include_in_schema=documented,
        )


# --- errors ------------------------------------------------------------------------------------


async def _on_rejected(request: Request, exc: Exception) -> JSONResponse:
    return await _bridge_of(request).reject(request, cast(PushRejected, exc))


async def _on_unauthenticated(request: Request, _exc: Exception) -> JSONResponse:
    log.warning("gateway_push_unauthenticated", client=request.client and request.client.host)
    return JSONResponse({"error": "missing or wrong gateway secret"}, status_code=401)


async def _on_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    return _unavailable(cast(BrokerUnavailable, exc))


class _BridgeApp(FastAPI):
    contract = CONTRACT

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            _, defs = models_json_schema(
                [(model, "validation") for model in WIRE_MODELS],
                ref_template="#/components/schemas/{model}",
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                defs.get("$defs", {})
            )
            complete(schema, self.contract)
        return self.openapi_schema or {}


def create_bridge_app(
    settings: Settings, bus: Bus, clock: Clock, arrivals: SmsArrivals | None = None
) -> FastAPI:
    secret = settings.secrets.gateway_secret.get_secret_value()
    if not secret:
        log.warning("gateway_secret_not_configured", effect="every push is refused with 401")
    app = _BridgeApp(
        title="simfleet gateway bridge",
        summary="Skyline SMS gateway pushes → Kafka (sms.inbound, gateway.status)",
        description=__doc__,
        version="1",
        # not on the public port: served by the ops port (infra.api_docs), without a CDN
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=NO_TELEMETRY,
    )
    if not settings.secrets_in_urls:
        app.contract = CONTRACT.without_secrets_in_urls()
    app.state.bridge = Bridge(
        secret,
        settings.bridge_max_body_bytes,
        bus,
        clock,
        secret_in_url=settings.secrets_in_urls,
        arrivals=arrivals,
    )
    if settings.secrets_in_urls:
        # the same operations for gateways that can only be given a URL; hidden: same schema.
        # First, because that is how gateways are configured: routes are matched in order.
        _add_push_routes(app, "/s/{secret}", documented=False)
    app.add_api_route("/healthz", healthz, methods=["GET"])
    _add_push_routes(app)
    app.add_exception_handler(PushRejected, _on_rejected)
    app.add_exception_handler(NotAuthenticated, _on_unauthenticated)
    app.add_exception_handler(BrokerUnavailable, _on_unavailable)
    app.add_middleware(RequestMetrics)
    bridge_routes_known(
        [(r.path, "POST") for r in app.routes if isinstance(r, APIRoute) and r.path != "/healthz"],
        (200, *(int(code) for code in _ERRORS)),
    )
    return app
