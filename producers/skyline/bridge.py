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

from typing import Any, cast

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from faststream.kafka import KafkaBroker
from starlette.routing import request_response

from infra.bus import BrokerUnavailable, Bus
from infra.clock import Clock
from infra.http import NO_TELEMETRY
from infra.metrics import RequestMetrics, bridge_routes_known
from infra.settings import Settings
from producers.skyline.arrivals import SmsArrivals
from producers.skyline.intake import (
    RETRY_AFTER_S,
    Bridge,
    NotAuthenticated,
    authenticated,
    bridge_of,
    unavailable,
)
from producers.skyline.openapi import (
    CONTRACT,
    ERRORS,
    SIMPLE_DOC,
    SMS_DOC,
    STATUS_DOC,
    PushAccepted,
    with_wire_models,
)
from producers.skyline.parsed_push import gateway_id_from
from producers.skyline.push import (
    parse_http_push,
    parse_json_push,
    parse_simple_push,
)
from producers.skyline.push_fields import PushRejected

__all__ = ["RETRY_AFTER_S", "create_bridge_app"]

log = structlog.get_logger("simfleet.gateway_bridge")


def _is_json(request: Request, body: bytes) -> bool:
    # the gateway's JSON push says so; some firmware sends it as text/plain anyway
    return "json" in request.headers.get("content-type", "") or body.lstrip()[:1] in (b"{", b"[")


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


class _PlainRoute(APIRoute):
    """Described as FastAPI describes a route (the API document), served as Starlette serves a
    ``request -> response`` endpoint. The push routes read the request and build their answer
    themselves, so FastAPI's per-request dependency solving and exit stacks had nothing to do but
    cost about a sixth of the bridge's CPU per push (bench/bench_bridge.py, profiled)."""

    def __init__(self, path: str, endpoint: Any, **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        self.app = request_response(endpoint)


PUSH_ROUTES = (
    ("/sms", receive_push, SMS_DOC, "Gateway push: received SMS or status"),
    ("/sms/simple", receive_simple, SIMPLE_DOC, "Generic inbound SMS"),
    ("/status", receive_status, STATUS_DOC, "Gateway port status"),
)


def _add_push_routes(app: FastAPI, prefix: str = "", *, documented: bool = True) -> None:
    """Routes declared on the app itself: an included router is matched through a wrapper
    per request, a tenth of the bridge's CPU per push (bench/bench_bridge.py, profiled)."""
    for path, endpoint, doc, summary in PUSH_ROUTES:
        app.router.add_api_route(
            prefix + path,
            endpoint,
            methods=["POST"],
            response_model=PushAccepted,
            responses=ERRORS,
            openapi_extra=doc,
            summary=summary,
            tags=["pushes"],
            include_in_schema=documented,
            route_class_override=_PlainRoute,
        )


# --- errors ------------------------------------------------------------------------------------


async def _on_rejected(request: Request, exc: Exception) -> JSONResponse:
    return await bridge_of(request).reject(request, cast(PushRejected, exc))


async def _on_unauthenticated(request: Request, _exc: Exception) -> JSONResponse:
    log.warning("gateway_push_unauthenticated", client=request.client and request.client.host)
    return JSONResponse({"error": "missing or wrong gateway secret"}, status_code=401)


async def _on_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    return unavailable(cast(BrokerUnavailable, exc))


class _BridgeApp(FastAPI):
    contract = CONTRACT

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            with_wire_models(super().openapi(), self.contract)
        return self.openapi_schema or {}


def _bare_app(settings: Settings) -> _BridgeApp:
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
    return app


def bridge_bus(broker: KafkaBroker, settings: Settings) -> Bus:
    """The bus the pushes are published on: its own produce window
    (``SIMFLEET_BRIDGE_PRODUCE_WINDOW_MS``), not the process's other publishers'."""
    window_s = settings.bridge_produce_window_ms / 1000
    return Bus(broker, settings.kafka.topic_prefix, window_s=window_s)


def create_bridge_app(
    settings: Settings, bus: Bus, clock: Clock, arrivals: SmsArrivals | None = None
) -> FastAPI:
    secret = settings.secrets.gateway_secret.get_secret_value()
    if not secret:
        log.warning("gateway_secret_not_configured", effect="every push is refused with 401")
    app = _bare_app(settings)
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
        (200, *(int(code) for code in ERRORS)),
    )
    return app
