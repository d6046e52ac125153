"""The carrier provider: the Helix and Skyline clients every carrier-facing component uses, and,
where no real carrier or gateways are configured, the sandbox's (one shared world)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import structlog
from httpx_aiohttp import AiohttpTransport

from infra.gateway_clients import GatewayClients
from infra.helix.client import HelixClient
from infra.http import serve_http
from infra.settings import HelixSettings, SkylineSettings
from infra.webhook_signing import SecretBox
from sandbox.gateway_api import gateway_addresses, serve_gateways
from sandbox.gateways import GatewayNetwork
from sandbox.helix import HelixSandbox, create_helix_sandbox, sandbox_of
from sandbox.helix_world import HelixWorld
from simfleet import demo
from simfleet.app import Runtime, supervised

log = structlog.get_logger("simfleet")


@contextlib.asynccontextmanager
async def carrier_objects(rt: Runtime) -> AsyncIterator[None]:
    """The Helix and Skyline clients (``rt.helix``, ``rt.skyline``); their sandboxes (one shared
    world: ``rt.helix_world``, ``rt.helix_sandbox``, ``rt.gateway_network``) where none is set."""
    settings = rt.settings
    hx, sk = settings.helix, settings.skyline
    if settings.env == "production" and (hx.api_base is None or not sk.configured):
        raise RuntimeError("production runs no sandbox: set HX_API_BASE and SK_GATEWAYS or SK_HOST")
    async with contextlib.AsyncExitStack() as stack:
        world: HelixWorld | None = None
        helix_sandbox: HelixSandbox | None = None
        if hx.api_base is None:
            world, helix_sandbox, hx = await sandbox_carrier(stack, hx)
        # aiohttp underneath: httpx's own transport costs ~3.4 ms CPU per carrier call here
        helix_http = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=hx.api_base or "", timeout=hx.timeout_s, transport=AiohttpTransport()
            )
        )
        network: GatewayNetwork | None = None
        if not sk.configured:
            network, sk = await sandbox_gateways(rt, stack, world, sk)
        skyline = GatewayClients(sk, rt.pool)
        stack.push_async_callback(skyline.aclose)
        rt.helix = HelixClient(
            helix_http, hx, rt.pool, rt.bus.emit, box=SecretBox.of_deployment(settings)
        )
        rt.skyline = skyline
        rt.gateway_network = network
        rt.helix_sandbox, rt.helix_world = helix_sandbox, world
        yield


async def sandbox_carrier(
    stack: contextlib.AsyncExitStack, hx: HelixSettings
) -> tuple[HelixWorld, HelixSandbox, HelixSettings]:
    """The sandbox Helix API, served for the stack's life; ``hx`` pointed at it."""
    world = HelixWorld(
        client_id=hx.client_id,
        username=hx.grant_username,
        password=hx.grant_password.get_secret_value(),
    )
    helix_app = create_helix_sandbox(world)
    url = await stack.enter_async_context(serve_http(helix_app))
    log.info("sandbox_started", system="helix", url=url)
    hx = hx.model_copy(update={"api_base": url, "token_url": f"{url}/oauth/token"})
    return world, sandbox_of(helix_app), hx


async def sandbox_gateways(
    rt: Runtime, stack: contextlib.AsyncExitStack, world: HelixWorld | None, sk: SkylineSettings
) -> tuple[GatewayNetwork, SkylineSettings]:
    """The sandbox gateways, serving the sandbox carrier's numbers and pushing to this bridge,
    for the stack's life; ``sk`` pointed at them."""
    if world is None:
        raise RuntimeError(
            "SK_HOST is unset but HX_API_BASE is set: the sandbox gateways route SMS by "
            "the sandbox carrier's numbers; set SK_HOST or SK_GATEWAYS for real gateways"
        )
    settings = rt.settings
    network = GatewayNetwork(world, gateways=demo.GATEWAYS, auto_insert=True)
    stack.push_async_callback(network.aclose)
    urls = await stack.enter_async_context(serve_gateways(network))
    network.connect_bridge(
        f"http://{settings.bridge_host}:{settings.bridge_port}",
        settings.secrets.gateway_secret.get_secret_value(),
    )
    await stack.enter_async_context(
        supervised(rt, "sandbox-gateways", network.run_status_pushes(60))
    )
    log.info("sandbox_started", system="skyline", urls=sorted(urls.values()))
    return network, sk.model_copy(update={"gateways": gateway_addresses(network, urls)})
