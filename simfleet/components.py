"""Composition root, contents: every component simfleet has and what each needs.

With ``simfleet.app`` and ``simfleet.cli`` the only modules that import the flow packages.
Roles: ``projector`` (read tables, archive), ``bridge`` (gateway pushes), ``workers`` (side-effect
consumers), ``scheduler`` (clock-driven requests and sweeps), ``dashboard``, ``sandbox``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Protocol

import httpx
import structlog
from faststream.kafka import KafkaRouter
from httpx_aiohttp import AiohttpTransport

from alerting import checks as alert_checks
from alerting import rotation_checks as rotation_alerts
from alerting.incidents import Alerts
from consumers import provisioning, rotation, silence
from consumers.verification import consumer as verification
from consumers.webhooks import consumer as webhooks
from consumers.webhooks import endpoint_health
from dashboard.app import create_dashboard_app
from infra import asyncapi
from infra.alert_sink import AlertSink, LogSink, SlackSink
from infra.api_docs import api_docs_router
from infra.dead_letters import DeadLetters
from infra.gateway_clients import GatewayClients
from infra.helix.client import HelixClient
from infra.http import serve_http
from infra.kafka import Bus, build_broker
from infra.kafka_lag import meter_for
from infra.settings import Settings
from infra.webhook_sender import WebhookSender
from infra.webhook_signing import SecretBox
from producers.scheduler import Scheduler
from producers.skyline.arrivals import SmsArrivals
from producers.skyline.bridge import create_bridge_app
from producers.token_uses import TokenUses
from projections import overview_queries
from projections.registry import all_projections
from projections.runner import ProjectionRunner
from sandbox.gateway_api import gateway_addresses, serve_gateways
from sandbox.gateways import GatewayNetwork
from sandbox.helix import HelixSandbox, create_helix_sandbox, sandbox_of
from sandbox.helix_world import HelixWorld
from sandbox.reseller import create_reseller_receiver
from simfleet import demo, sweeps
from simfleet.app import Component, Runtime, supervised

log = structlog.get_logger("simfleet")


@contextlib.asynccontextmanager
async def projector_service(rt: Runtime) -> AsyncIterator[str]:
    runners = [
        ProjectionRunner(
            projection,
            bootstrap=rt.endpoints.kafka_bootstrap,
            kafka=rt.settings.kafka,
            pool=rt.pool,
            dead_letters=DeadLetters(rt.bus, f"projection.{name}"),
        )
        for name, projection in all_projections().items()
    ]
    rt.joining.extend(asyncio.create_task(r.assigned.wait()) for r in runners)
    async with supervised(rt, "projector", *(r.run() for r in runners)):
        yield f"projecting {', '.join(all_projections())}"


@contextlib.asynccontextmanager
async def bridge_service(rt: Runtime) -> AsyncIterator[str]:
    """The public port carries the gateway routes and /healthz only; metrics, readiness and the
    API description are on the ops port (not for gateways, nor for whoever can reach them)."""
    arrivals = SmsArrivals(rt.pool, rt.settings.bridge_retry_window_s)
    app = create_bridge_app(rt.settings, rt.bus, rt.clock, arrivals)
    if rt.ops_app is not None:
        rt.ops_app.include_router(api_docs_router("/bridge", app.openapi))
    async with serve_http(
        app,
        rt.settings.bridge_host,
        rt.settings.bridge_port,
        max_head_bytes=rt.settings.max_request_head_bytes,
    ) as url:
        yield f"gateway pushes to {url}/sms and {url}/status (API at {rt.ops_url}/bridge/docs)"


@contextlib.asynccontextmanager
async def webhook_objects(rt: Runtime) -> AsyncIterator[None]:
    """The webhook dispatcher (``rt.webhooks``) with a producer and an HTTP sender of its own:
    stopped after the consumer, so deliveries under way still record what they sent."""
    settings = rt.settings
    publisher = build_broker(
        settings.kafka, rt.endpoints.kafka_bootstrap, client_id=webhooks.PUBLISHER_CLIENT_ID
    )
    await publisher.start()
    try:
        async with (
            WebhookSender(settings.webhooks, clock=rt.clock) as sender,
            webhooks.dispatching(
                settings, bus=Bus(publisher, settings.kafka.topic_prefix), sender=sender,
                pool=rt.pool, clock=rt.clock, box=SecretBox.of_deployment(settings),
                stop=rt.stop,
            ) as dispatcher,
        ):  # fmt: skip
            rt.webhooks = dispatcher
            yield
    finally:
        await publisher.stop()


@contextlib.asynccontextmanager
async def health_objects(rt: Runtime) -> AsyncIterator[None]:
    rt.endpoint_health = health_tracker(rt)
    yield


def health_tracker(rt: Runtime) -> endpoint_health.HealthTracker:
    return endpoint_health.tracker_for(rt.settings, pool=rt.pool, bus=rt.bus, clock=rt.clock)


@contextlib.asynccontextmanager
async def alert_sink(rt: Runtime) -> AsyncIterator[AlertSink]:
    url = rt.settings.alerts.webhook_url
    if url is None or not url.get_secret_value():
        yield LogSink()
        return
    async with httpx.AsyncClient(timeout=rt.settings.alerts.timeout_s) as client:
        secrets = [v for v in rt.settings.secret_values().values() if v]
        yield SlackSink(client, url.get_secret_value(), secrets)


def alert_checks_for(rt: Runtime) -> list[alert_checks.Check]:
    """The operational checks; each is independent (add one by appending it)."""
    a = rt.settings.alerts
    window = timedelta(seconds=a.window_s)

    async def lag(_now: datetime) -> dict[str, float] | None:
        return await meter_for(rt.endpoints.kafka_bootstrap, rt.settings.kafka).lags()

    async def silent(_now: datetime) -> int:
        return await overview_queries.silent_sim_count(rt.pool)

    return [
        alert_checks.DisabledEndpoints(rt.pool),
        alert_checks.verification_failures(
            rt.pool, window=window, min_samples=a.min_samples, threshold=a.verification_failure_rate
        ),
        alert_checks.helix_errors(
            rt.pool, window=window, min_samples=a.min_samples, threshold=a.helix_error_rate
        ),
        alert_checks.consumer_lag(lag, a.consumer_lag),
        alert_checks.silent_sims(silent, a.silent_sims),
        rotation_alerts.RotationPaused(rt.pool),
        rotation_alerts.RotationIncomplete(rt.pool),
    ]


@contextlib.asynccontextmanager
async def receiver_objects(rt: Runtime) -> AsyncIterator[None]:
    """The sandbox reseller endpoint, in development only: where demo webhooks land."""
    port = rt.settings.webhooks.sandbox_receiver_port
    if rt.settings.env != "development" or not port:
        yield
        return
    app, rt.reseller_receiver = create_reseller_receiver()
    async with serve_http(app, port=port) as rt.reseller_receiver_url:
        yield


@contextlib.asynccontextmanager
async def demo_service(rt: Runtime) -> AsyncIterator[str | None]:
    network, receiver, url = rt.gateway_network, rt.reseller_receiver, rt.reseller_receiver_url
    sims = rt.settings.demo_sims
    if network is None or receiver is None or not sims:
        yield None
        return
    if rt.helix_world is not None:
        await demo.restore_lines(rt.pool, rt.helix_world)
    await demo.seed(
        rt.pool,
        rt.bus,
        clock=rt.clock,
        webhooks=rt.settings.webhooks,
        box=SecretBox.of_deployment(rt.settings),
        receiver=receiver,
        receiver_url=url,
        sims=sims,
    )
    async with supervised(
        rt, "demo", demo.traffic(rt.pool, network, receiver, rt.settings.demo_interval_s)
    ):
        yield (
            f"{sims} sandbox SIMs for reseller {demo.RESELLER!r}; SMS every "
            f"{rt.settings.demo_interval_s:g}s; webhooks land at {url}/hooks/demo"
        )


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
            world = HelixWorld(
                client_id=hx.client_id,
                username=hx.grant_username,
                password=hx.grant_password.get_secret_value(),
            )
            helix_app = create_helix_sandbox(world)
            helix_sandbox = sandbox_of(helix_app)
            url = await stack.enter_async_context(serve_http(helix_app))
            hx = hx.model_copy(update={"api_base": url, "token_url": f"{url}/oauth/token"})
            log.info("sandbox_started", system="helix", url=url)
        # aiohttp underneath: httpx's own transport costs ~3.4 ms CPU per carrier call here
        helix_http = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=hx.api_base or "", timeout=hx.timeout_s, transport=AiohttpTransport()
            )
        )
        if not sk.configured:
            if world is None:
                raise RuntimeError(
                    "SK_HOST is unset but HX_API_BASE is set: the sandbox gateways route SMS by "
                    "the sandbox carrier's numbers; set SK_HOST or SK_GATEWAYS for real gateways"
                )
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
            sk = sk.model_copy(update={"gateways": gateway_addresses(network, urls)})
            log.info("sandbox_started", system="skyline", urls=sorted(urls.values()))
        skyline = GatewayClients(sk, rt.pool)
        stack.push_async_callback(skyline.aclose)
        rt.helix = HelixClient(
            helix_http, hx, rt.pool, rt.bus.emit, box=SecretBox.of_deployment(settings)
        )
        rt.skyline = skyline
        rt.gateway_network = None if settings.skyline.configured else network
        rt.helix_sandbox, rt.helix_world = helix_sandbox, world
        yield


@contextlib.asynccontextmanager
async def scheduler_service(rt: Runtime) -> AsyncIterator[str]:
    helix = rt.helix
    if helix is None:
        raise RuntimeError("the scheduler needs the Helix client")
    hx = rt.settings.helix
    scheduler = Scheduler(rt.pool, rt.bus, rt.clock, rt.settings)
    every_verification_sweep = rt.settings.rotation.verification_sweep_s
    every_alert_round = rt.settings.alerts.interval_s
    async with alert_sink(rt) as sink:
        prefix = rt.settings.kafka.topic_prefix.rstrip(".")
        alerts = Alerts(
            rt.pool, sink, rt.clock, alert_checks_for(rt),
            label=f"simfleet {prefix}" if prefix else "simfleet",
        )  # fmt: skip
        # every clock-driven round of the scheduler process, with its period: simfleet/sweeps.py
        every = sweeps.scheduled(
            rt, scheduler, helix=helix, tracker=health_tracker(rt), alerts=alerts
        )
        loops = (scheduler.every(sweep.period_s, sweep.round) for sweep in every)
        async with supervised(rt, "scheduler", *loops):
            yield (
                f"verification sweep every {every_verification_sweep:g}s, "
                f"rotation daily at {rt.settings.rotation.at}, finalize sweep every "
                f"{hx.finalize_sweep_s:g}s, silence sweep every "
                f"{rt.settings.silence.sweep_s:g}s, alerts every {every_alert_round:g}s"
            )


class RouterModule(Protocol):
    def build_router(self, settings: Settings) -> KafkaRouter: ...


# by the name `simfleet workers NAME` takes (a flow's module is not always named after it)
CARRIER_WORKERS: dict[str, RouterModule] = {
    "provisioning": provisioning,
    "verification": verification,
    "rotation": rotation,
}


def worker(name: str, module: RouterModule) -> Component:
    """A side-effect consumer that talks to the carrier or the gateways."""

    def routers(settings: Settings) -> list[KafkaRouter]:
        return [module.build_router(settings)]

    return Component(name, "workers", routers=routers, providers=(carrier_objects,))


@contextlib.asynccontextmanager
async def dashboard_service(rt: Runtime) -> AsyncIterator[str]:
    app = create_dashboard_app(
        rt.settings,
        rt.pool,
        rt.bus,
        rt.clock,
        helix=rt.helix,
        lag=meter_for(rt.endpoints.kafka_bootstrap, rt.settings.kafka).lags,
    )
    uses: TokenUses = app.state.token_uses
    try:
        async with (
            serve_http(
                app,
                rt.settings.dashboard_host,
                rt.settings.dashboard_port,
                max_head_bytes=rt.settings.max_request_head_bytes,
            ) as url,
            supervised(rt, "reseller-token-uses", uses.run()),
        ):
            user, _, password = rt.settings.secrets.dashboard_auth.get_secret_value().partition(":")
            # the operator's own terminal, in development only (the generated credentials)
            shown = password if rt.settings.env == "development" else "from DASHBOARD_AUTH"
            yield f"at {url} (user {user!r}, password {shown})"
    finally:
        await uses.flush()  # the last requests' uses, before the bus closes


def registered_components() -> list[Component]:
    """Every component simfleet has, in start order."""
    return [
        Component("projector", "projector", services=(projector_service,)),
        Component("bridge", "bridge", services=(bridge_service,)),
        *(worker(name, module) for name, module in CARRIER_WORKERS.items()),
        Component(
            "webhooks",
            "workers",
            routers=lambda s: [webhooks.build_router(s)],
            providers=(webhook_objects,),
        ),
        Component("silence", "workers", routers=lambda s: [silence.build_router(s)]),
        Component(
            "endpoint_health",
            "workers",
            routers=lambda s: [endpoint_health.build_router(s)],
            providers=(health_objects,),
        ),
        Component(
            "scheduler", "scheduler", services=(scheduler_service,), providers=(carrier_objects,)
        ),
        Component(
            "dashboard", "dashboard", services=(dashboard_service,), providers=(carrier_objects,)
        ),
        Component(
            "demo",
            "sandbox",
            services=(demo_service,),
            providers=(carrier_objects, receiver_objects),
        ),
    ]


def asyncapi_document() -> str:
    """The AsyncAPI YAML as checked in (unprefixed topic names, the default server address)."""
    return asyncapi.render()


def components_by_role(role: str) -> list[Component]:
    return [c for c in registered_components() if c.role == role]
