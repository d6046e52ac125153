"""Composition root, machinery: builds the broker, pool and shared clients on the endpoints
``simfleet.endpoints`` resolved, and runs components until a signal. What the components are is
``simfleet.components``.

A component contributes FastStream routers (consumers), providers (the clients its handlers need,
set on the runtime's typed fields, entered before the broker starts and left after it stopped)
and services (HTTP servers, projection runners, schedules); ``serve`` runs the ones asked for in
one process, so ``simfleet run`` and ``simfleet workers`` share one path.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, KafkaRouter

from consumers.webhooks.consumer import Webhooks
from consumers.webhooks.endpoint_health import HealthTracker
from infra import gc_tuning, supervision
from infra.bus import Bus
from infra.clock import Clock, SystemClock
from infra.console_summary import console_summary
from infra.gateway_clients import GatewayClients
from infra.helix.client import HelixClient
from infra.http import serve_http
from infra.kafka import build_broker, ensure_topics
from infra.kafka_lag import meter_for
from infra.ops import Check, broker_check, ops_app, postgres_check
from infra.postgres import create_pool, migrate
from infra.settings import Settings
from sandbox.gateways import GatewayNetwork
from sandbox.helix import HelixSandbox
from sandbox.helix_world import HelixWorld
from sandbox.reseller import ReceiverState
from simfleet.endpoints import Endpoints

log = structlog.get_logger("simfleet")


def announce_line(line: str) -> None:
    """A line for the operator on stdout, at once even when stdout is a pipe (``| tee``)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class Runtime:
    """What a running component may use; built once per process. The fields after ``joining``
    are filled by the providers the process's components asked for (None: none asked)."""

    settings: Settings
    endpoints: Endpoints
    broker: KafkaBroker
    bus: Bus
    pool: asyncpg.Pool
    clock: Clock = field(default_factory=SystemClock)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    # what must finish before the process is ready (consumer groups joining); services add theirs
    joining: list[asyncio.Task[Any]] = field(default_factory=list)
    helix: HelixClient | None = None
    skyline: GatewayClients | None = None
    # the sandbox's carrier and gateways, where no real ones are configured
    helix_world: HelixWorld | None = None
    helix_sandbox: HelixSandbox | None = None
    gateway_network: GatewayNetwork | None = None
    # the sandbox reseller endpoint demo webhooks land at (development only)
    reseller_receiver: ReceiverState | None = None
    reseller_receiver_url: str = ""
    webhooks: Webhooks | None = None
    endpoint_health: HealthTracker | None = None
    # the ops port, where components add their private pages (the bridge's API description)
    ops_app: FastAPI | None = None
    ops_url: str = ""

    def handler_context(self) -> dict[str, object]:
        """What handlers resolve from FastStream's context by name (``infra/deps.py`` and the
        flows' own ``*Dep``): whatever this process has."""
        named: dict[str, object | None] = {
            "settings": self.settings, "bus": self.bus, "pool": self.pool, "clock": self.clock,
            "helix": self.helix, "skyline": self.skyline, "webhooks": self.webhooks,
            "endpoint_health": self.endpoint_health,
        }  # fmt: skip
        return {name: value for name, value in named.items() if value is not None}


# where a process tells its operator what it started (stdout; tests collect the lines)
Announce = Callable[[str], Any]
ServiceFactory = Callable[[Runtime], contextlib.AbstractAsyncContextManager[str | None]]
# fills the runtime's fields it owns for the block (clients, sandboxes, the webhook dispatcher)
Provider = Callable[[Runtime], contextlib.AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class Component:
    name: str
    role: str
    routers: Callable[[Settings], Sequence[KafkaRouter]] = lambda _settings: ()
    services: Sequence[ServiceFactory] = ()
    providers: Sequence[Provider] = ()


def supervised(rt: Runtime, name: str, *coros: Any) -> contextlib.AbstractAsyncContextManager[None]:
    """Runs background loops for the block; one ending unexpectedly stops the process."""
    return supervision.supervised(name, rt.stop, *coros)


def readiness_checks(rt: Runtime) -> dict[str, Check]:
    return {"broker": broker_check(rt.broker), "postgres": postgres_check(rt.pool)}


async def prepare(settings: Settings, endpoints: Endpoints) -> None:
    """Migrations and topics: idempotent, run by every process at start-up."""
    applied = await migrate(endpoints.database_url)
    created = await ensure_topics(endpoints.kafka_bootstrap, settings.kafka)
    log.info("infrastructure_ready", migrations_applied=applied, topics_created=len(created))


@contextlib.asynccontextmanager
async def runtime(
    settings: Settings,
    endpoints: Endpoints,
    routers: Sequence[KafkaRouter] = (),
    *,
    clock: Clock | None = None,
    providers: Sequence[Provider] = (),
    join_in_background: bool = False,
) -> AsyncIterator[Runtime]:
    """``join_in_background``: the block starts with the producer connected while the consumer
    groups still join (``rt.joining``), so start-up work overlaps their rebalance delays."""
    broker = build_broker(settings.kafka, endpoints.kafka_bootstrap, logger=log)
    for router in routers:
        broker.include_router(router)
    pool = await create_pool(
        endpoints.database_url,
        min_size=settings.postgres.database_pool_min,
        max_size=settings.postgres.database_pool_max,
    )
    bus = Bus(broker, settings.kafka.topic_prefix)
    rt = Runtime(settings, endpoints, broker, bus, pool, clock or SystemClock())
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(pool.close)
        for provide in dict.fromkeys(providers):  # each provider once, in order
            await stack.enter_async_context(provide(rt))
        for name, value in rt.handler_context().items():
            broker.context.set_global(name, value)
        await broker.connect()
        joined = asyncio.create_task(broker.start(), name="consumer groups joining")
        rt.joining.append(joined)
        try:
            if not join_in_background:
                await joined
            yield rt
        finally:
            for task in rt.joining:
                task.cancel()  # no-op when done
            await asyncio.gather(*rt.joining, return_exceptions=True)
            await broker.stop()


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    endpoints: Endpoints,
    components: Sequence[Component],
    *,
    announce: Announce = announce_line,
    clock: Clock | None = None,
) -> AsyncIterator[Runtime]:
    """The components running for the block: consumers joined, providers entered, services up
    (HTTP servers listening); left in reverse order. ``serve`` holds it until a signal; tests
    hold it around what they drive."""
    began = time.monotonic()
    routers = [r for c in components for r in c.routers(settings)]
    providers = [p for c in components for p in c.providers]
    # the consumer groups join side by side (each waits out the broker's rebalance delay)
    announce(f"starting {', '.join(c.name for c in components)}")
    async with (
        runtime(
            settings, endpoints, routers, providers=providers, clock=clock, join_in_background=True
        ) as rt,
        contextlib.AsyncExitStack() as stack,
    ):
        for line in endpoints.embedded:
            announce(f"embedded {line}")
        await serve_ops(rt, stack, announce)
        await start_services(rt, stack, components, announce)
        await joined_or_stopped(rt)
        await stack.enter_async_context(supervised(rt, "summary", console_summary(settings)))
        announce(f"ready in {time.monotonic() - began:.1f}s: every consumer group joined")
        yield rt


async def serve_ops(rt: Runtime, stack: contextlib.AsyncExitStack, announce: Announce) -> None:
    """The ops port (health, readiness, metrics) for the stack's life; ``rt.ops_app`` takes the
    components' private pages."""
    settings = rt.settings
    ops = ops_app(
        readiness_checks(rt), meter_for(rt.endpoints.kafka_bootstrap, settings.kafka).lags
    )
    ops_url = await stack.enter_async_context(serve_http(ops, settings.ops_host, settings.ops_port))
    rt.ops_app, rt.ops_url = ops, ops_url
    announce(f"health and metrics: {ops_url}/healthz {ops_url}/readyz {ops_url}/metrics")


async def start_services(
    rt: Runtime,
    stack: contextlib.AsyncExitStack,
    components: Sequence[Component],
    announce: Announce,
) -> None:
    """Each component's services in order, for the stack's life; each says where it is."""
    for component in components:
        for factory in component.services:
            where = await stack.enter_async_context(factory(rt))
            if where:
                announce(f"{component.name}: {where}")


async def joined_or_stopped(rt: Runtime) -> None:
    """Waits for every consumer group to join, unless a component failed meanwhile."""
    joined = asyncio.ensure_future(asyncio.gather(*rt.joining))
    stopped = asyncio.ensure_future(rt.stop.wait())
    try:
        await asyncio.wait({joined, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not joined.done():
            joined.cancel()
    if joined.done() and not joined.cancelled():
        joined.result()  # a consumer that could not start fails the start-up


async def serve(
    settings: Settings,
    endpoints: Endpoints,
    components: Sequence[Component],
    *,
    announce: Announce = announce_line,
) -> None:
    """Runs the components until SIGINT/SIGTERM, then stops them in reverse order."""
    await prepare(settings, endpoints)
    stop = asyncio.Event()  # Ctrl-C / SIGTERM
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(settings, endpoints, components, announce=announce) as rt:
        # what start-up built lives as long as the process: kept out of the collector's
        # collections, which hold the GIL and so the event loop (a sheet import's churn sets
        # them off; walking start-up's objects too made each one last hundreds of ms)
        gc_tuning.tune_for_service()
        announce("simfleet is running; Ctrl-C stops it")
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(rt.stop.wait())
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        failed.cancel()
    announce("simfleet stopped")
