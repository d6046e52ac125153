"""Endpoint health and alerts on top of the webhook world: the health consumer (as `simfleet
workers endpoint_health` runs it), the event archive, a clock the test moves, and the alert
evaluator posting to the sandbox receiver (a real HTTP sink)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from alerting import checks as alert_checks
from alerting.incidents import Alerts
from consumers.webhooks import endpoint_health
from infra.alert_sink import SlackSink
from projections.archive import ArchiveProjection
from simfleet.app import runtime
from simfleet.components import health_objects
from simfleet.endpoints import Endpoints
from tests.support.clock import ControlledClock
from tests.support.projecting import projecting
from tests.support.webhook_world import World

ALERT_HOOK = "alerts"  # the receiver's "endpoint" that plays the Slack channel


@dataclass
class HealthWorld:
    world: World
    clock: ControlledClock
    tracker: endpoint_health.HealthTracker
    sink: SlackSink

    def alerts(self, *checks: alert_checks.Check) -> Alerts:
        return Alerts(self.world.pool, self.sink, self.clock, checks, label="simfleet test")

    def alert_texts(self) -> list[str]:
        return [str(d.payload["text"]) for d in self.world.receiver.received(ALERT_HOOK)]

    async def event_types(self, event_type: str) -> list[str]:
        rows = await self.world.pool.fetch(
            "SELECT id FROM event_log WHERE type = $1 ORDER BY id", event_type
        )
        return [r["id"] for r in rows]


@contextlib.asynccontextmanager
async def health_world(world: World) -> AsyncIterator[HealthWorld]:
    """The health consumer as the composition root runs it (its runtime and provider), on this
    world's clock."""
    settings, clock = world.settings, ControlledClock()
    endpoints = Endpoints(world.kafka_bootstrap, world.database_url)
    routers = [endpoint_health.build_router(settings)]
    async with (
        runtime(settings, endpoints, routers, clock=clock, providers=[health_objects]) as rt,
        projecting(
            [ArchiveProjection()], bootstrap=world.kafka_bootstrap, kafka=settings.kafka,
            pool=world.pool, bus=world.bus,
        ),
        httpx.AsyncClient(timeout=5) as client,
    ):  # fmt: skip
        assert rt.endpoint_health is not None
        sink = SlackSink(client, world.url(ALERT_HOOK))
        yield HealthWorld(world, clock, rt.endpoint_health, sink)
