"""Composition root, contents: every component simfleet has and what each needs.

With ``infra.app`` and ``infra.cli`` the only modules that import the flow packages.
Roles: ``projector`` (read tables, archive), ``bridge`` (gateway pushes), ``workers`` (side-effect
consumers), ``scheduler`` (clock-driven requests and sweeps), ``dashboard``, ``sandbox``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from consumers import webhooks
from consumers.dlq import DeadLetters
from infra import asyncapi
from infra.app import Component, Runtime, readiness_checks, supervised
from infra.http import serve_http
from infra.ops import ops_router
from infra.settings import KafkaSettings, Settings
from producers.gateway_bridge import create_bridge_app
from projections.registry import all_projections
from projections.runner import ProjectionRunner
from sandbox.reseller import create_reseller_receiver


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
    async with supervised(rt, "projector", *(r.run() for r in runners)):
        yield f"projecting {', '.join(all_projections())}"


@contextlib.asynccontextmanager
async def bridge_service(rt: Runtime) -> AsyncIterator[str]:
    app = create_bridge_app(rt.settings, rt.bus, rt.clock)
    app.include_router(ops_router(readiness_checks(rt)))
    async with serve_http(app, rt.settings.bridge_host, rt.settings.bridge_port) as url:
        yield f"gateway pushes to {url}/sms and {url}/status (OpenAPI at {url}/docs)"


def webhook_objects(rt: Runtime) -> contextlib.AbstractAsyncContextManager[dict[str, object]]:
    return webhooks.webhook_runtime(
        rt.settings,
        bootstrap=rt.endpoints.kafka_bootstrap,
        pool=rt.pool,
        clock=rt.clock,
        box=webhooks.open_secret_box(rt.settings),
    )


@contextlib.asynccontextmanager
async def reseller_receiver_service(rt: Runtime) -> AsyncIterator[str | None]:
    """The sandbox reseller endpoint, in development only: where demo webhooks land."""
    port = rt.settings.webhooks.sandbox_receiver_port
    if rt.settings.env != "development" or not port:
        yield None
        return
    app, _state = create_reseller_receiver()
    async with serve_http(app, port=port) as url:
        yield f"sandbox reseller receiver at {url}/hooks/<endpoint_id>"


def registered_components() -> list[Component]:
    """Every component simfleet has, in start order."""
    return [
        Component("projector", "projector", services=(projector_service,)),
        Component("bridge", "bridge", services=(bridge_service,)),
        Component(
            "webhooks",
            "workers",
            routers=lambda s: [webhooks.build_router(s)],
            providers=(webhook_objects,),
        ),
        Component("reseller-receiver", "sandbox", services=(reseller_receiver_service,)),
    ]


def asyncapi_document() -> str:
    """The AsyncAPI YAML for the default (unprefixed) topic names."""
    settings = Settings(kafka=KafkaSettings(topic_prefix=""))
    return asyncapi.render([r for c in registered_components() for r in c.routers(settings)])


def components_by_role(role: str) -> list[Component]:
    return [c for c in registered_components() if c.role == role]
