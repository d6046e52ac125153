"""The sandbox gateways' HTTP API over a ``GatewayNetwork``: EXTERNAL_APIS §1.2 (send SMS) and
§1.3 (port status), credentials in the query as the firmware takes them.

``serve_gateways(network)`` serves every gateway's API at its own address, as separate devices
do; ``create_gateways_sandbox(network)`` serves them all in one app (the first at ``/``, each
under ``/gw/<gateway id>/``). The request faults (``flaky_5xx``, ``echoing``) are met here; the
task faults and the SMS's fate are the network's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from infra.http import serve_http
from infra.settings import GatewayAddress
from sandbox.gateways import GatewayNetwork


def authorize(
    network: GatewayNetwork, request: Request, gateway_id: str
) -> JSONResponse | str | None:
    """None if the query carries this gateway's credentials; else the refusal (a response or a
    task status)."""
    if "authorization" in request.headers:
        network.counts["basic_auth_refused"] += 1
        body = {"code": 401, "reason": "credentials go in the query, not in a header"}
        return JSONResponse(body, 401)
    username, password = network.credentials[gateway_id]
    if request.query_params.get("username") != username:
        return "1 Invalid User"
    if request.query_params.get("password") != password:
        return "14 Unauthorized"
    return None


async def sms_answer(network: GatewayNetwork, request: Request, gateway_id: str) -> JSONResponse:
    network.counts["send_requests"] += 1
    network.counts[f"send_requests:{gateway_id}"] += 1
    refused = authorize(network, request, gateway_id)
    if isinstance(refused, JSONResponse):
        return refused
    if network.fault("flaky_5xx"):
        return JSONResponse({"code": 500, "reason": "Server Error"}, 500)
    if network.fault("echoing"):
        return JSONResponse({"code": 500, "reason": f"Server Error for {request.url.query}"})
    body = await request.json()
    tasks = [t for t in body.get("tasks") or [] if isinstance(t, dict)]
    statuses = [
        {"tid": t.get("tid"), "status": refused or network.submit(gateway_id, t)} for t in tasks
    ]
    answer = {"code": 200, "reason": "OK", "type": "task-status", "status": statuses}
    return JSONResponse(answer)


async def status_answer(network: GatewayNetwork, request: Request, gateway_id: str) -> JSONResponse:
    refused = authorize(network, request, gateway_id)
    if isinstance(refused, JSONResponse):
        return refused
    if refused is not None:
        return JSONResponse({"code": 401, "reason": refused})
    return JSONResponse({"code": 200, "reason": "OK", **network.ports.dev_status(gateway_id)})


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
        return await sms_answer(network, request, gateway_id)

    @app.get("/goip_get_status.html")
    @app.get("/gw/{gateway_id}/goip_get_status.html")
    async def get_status(request: Request, gateway_id: str = default) -> JSONResponse:
        if gateway_id not in network.ports.sims:
            return unknown
        return await status_answer(network, request, gateway_id)

    @app.get("/_sandbox/stats")
    async def stats() -> dict[str, Any]:
        return {"mode": network.mode, "counts": dict(network.counts)}

    return app


def create_gateway_app(network: GatewayNetwork, gateway_id: str) -> FastAPI:
    """One gateway's API at ``/``, as a device serves it."""
    app = FastAPI(title=f"Skyline gateway {gateway_id} (sandbox)")

    @app.post("/goip_post_sms.html")
    async def send_sms(request: Request) -> JSONResponse:
        return await sms_answer(network, request, gateway_id)

    @app.get("/goip_get_status.html")
    async def get_status(request: Request) -> JSONResponse:
        return await status_answer(network, request, gateway_id)

    return app


@contextlib.asynccontextmanager
async def serve_gateways(network: GatewayNetwork, port: int = 0) -> AsyncIterator[dict[str, str]]:
    """Every gateway's API at its own address (on ``port`` everywhere, or any free one); yields
    each gateway's base URL by id."""
    async with contextlib.AsyncExitStack() as stack:
        urls = {
            g: await stack.enter_async_context(
                serve_http(create_gateway_app(network, g), host=network.hosts[g], port=port)
            )
            for g in network.ports.sims
        }
        yield urls
        await network.drain()


def gateway_addresses(network: GatewayNetwork, urls: dict[str, str]) -> tuple[GatewayAddress, ...]:
    """The served gateways as SK_GATEWAYS lists them: each its address and own credentials."""
    listed = []
    for gateway_id, url in urls.items():
        host, _, port = url.removeprefix("http://").rpartition(":")
        username, password = network.credentials[gateway_id]
        listed.append(
            GatewayAddress(
                id=gateway_id,
                host=host,
                port=int(port),
                username=username,
                password=SecretStr(password),
            )
        )
    return tuple(listed)
