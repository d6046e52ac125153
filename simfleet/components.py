"""Composition root, contents: every component simfleet has and what each needs.

The providers and services themed elsewhere: the carrier clients and sandboxes in
``simfleet.carrier``, the scheduler with its alerts in ``simfleet.scheduling``.
Roles: ``projector`` (read tables, archive), ``bridge`` (gateway pushes), ``workers`` (side-effect
consumers), ``scheduler`` (clock-driven requests and sweeps), ``dashboard``, ``sandbox``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

from faststream.kafka import KafkaRouter

from consumers import provisioning, rotation, silence
from consumers.verification import consumer as verification
from consumers.webhooks import consumer as webhooks
from consumers.webhooks import endpoint_health
from dashboard.app import create_dashboard_app
from infra import asyncapi
from infra.api_docs import api_docs_router
from infra.bus import Bus
from infra.dead_letters import DeadLetters
from infra.http import serve_http
from infra.kafka import build_broker
from infra.kafka_groups import delete_retired_groups
from infra.kafka_lag import meter_for
from infra.settings import Settings
from infra.webhook_sender import WebhookSender
from infra.webhook_signing import SecretBox
from producers.skyline.arrivals import SmsArrivals
from producers.skyline.bridge import bridge_bus, create_bridge_app
from producers.token_uses import TokenUses
from projections.registry import all_projections
from projections.runner import ProjectionRunner
from sandbox.reseller import create_reseller_receiver
from simfleet import demo
from simfleet.app import Component, Runtime, supervised
from simfleet.carrier import carrier_objects
from simfleet.scheduling import health_tracker, scheduler_service


@contextlib.asynccontextmanager
async def projector_service(rt: Runtime) -> AsyncIterator[str]:
    """Every projection on one consumer (group ``projector``). The group each projection had of
    its own is deleted on the way: its frozen offsets would read as growing lag for days."""
    projections = all_projections()
    kafka = rt.settings.kafka
    runner = ProjectionRunner(
        list(projections.values()),
        bootstrap=rt.endpoints.kafka_bootstrap,
        kafka=kafka,
        pool=rt.pool,
        dead_letters={name: DeadLetters(rt.bus, f"projection.{name}") for name in projections},
    )
    retired = [f"{kafka.topic_prefix}projection.{name}" for name in projections]
    await delete_retired_groups(rt.endpoints.kafka_bootstrap, kafka, retired)
    rt.joining.append(asyncio.create_task(runner.assigned.wait()))
    async with supervised(rt, "projector", runner.run()):
        yield f"projecting {', '.join(projections)}"


@contextlib.asynccontextmanager
async def bridge_service(rt: Runtime) -> AsyncIterator[str]:
    """The public port carries the gateway routes and /healthz only; metrics, readiness and the
    API description are on the ops port (not for gateways, nor for whoever can reach them)."""
    arrivals = SmsArrivals(rt.pool, rt.settings.bridge_retry_window_s)
    app = create_bridge_app(rt.settings, bridge_bus(rt.broker, rt.settings), rt.clock, arrivals)
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
