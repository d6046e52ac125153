"""The webhook world of the integration tests: real broker, Postgres, projections, the webhook
consumer and the sandbox reseller receiver over HTTP on loopback.

The consumer can be started, stopped and started again (restarts, takeovers) while the rest of
the world — read tables, receiver, the operator's command bus — stays up.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from cryptography.fernet import Fernet
from pydantic import SecretStr

from consumers.webhooks.consumer import build_router
from consumers.webhooks.dispatch import Dispatcher
from events.envelope import Event
from events.sms import SmsReceived
from events.topics import Topic
from infra.bus import Bus
from infra.clock import Clock, SystemClock
from infra.http import serve_http
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import Settings, WebhookSettings
from infra.webhook_signing import SecretBox
from producers.reseller_commands import IssuedSecret, ResellerCommands
from projections.deliveries import DeliveriesProjection
from projections.resellers import ResellersProjection
from sandbox.reseller import ReceiverMode, ReceiverState, create_reseller_receiver
from simfleet.app import runtime
from simfleet.components import webhook_objects
from simfleet.endpoints import Endpoints
from tests.support.assigned import until_assigned
from tests.support.eventually import eventually
from tests.support.projecting import projecting

# compressed schedule: the original's 1, 2, 4, 8 s and 1 min … 6 h, scaled down
FAST = WebhookSettings(
    allow_http=True,
    allow_private=True,
    timeout_s=1.0,
    fast_delays_s=(0.2, 0.4),
    retry_delays_s=(0.6, 1.0),
    jitter=0.0,
    max_age_s=30.0,
    lease_margin_s=1.0,
    takeover_grace_s=1.0,
    sweep_interval_s=0.2,
    endpoint_cache_s=0.0,
    rotation_overlap_s=3600.0,
)


@dataclass
class World:
    settings: Settings
    kafka_bootstrap: str
    pool: asyncpg.Pool
    bus: Bus
    box: SecretBox
    receiver: ReceiverState
    receiver_base: str
    commands: ResellerCommands
    database_url: str
    secrets: dict[str, str] = field(default_factory=dict)

    def url(self, endpoint_id: str) -> str:
        return f"{self.receiver_base}/hooks/{endpoint_id}"

    async def published(self, topic: Topic) -> list[bytes]:
        """Every value on ``topic`` so far (what a subscriber would read, secrets included)."""
        consumer = AIOKafkaConsumer(
            topic.full_name(self.settings.kafka.topic_prefix),
            bootstrap_servers=self.kafka_bootstrap,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=3000)
        finally:
            await consumer.stop()
        return [r.value for records in batch.values() for r in records]

    @contextlib.asynccontextmanager
    async def consumer(
        self,
        webhooks: WebhookSettings | None = None,
        *,
        group: str = "webhooks",
        clock: Clock | None = None,
    ) -> AsyncIterator[Dispatcher]:
        """The webhook consumer as `simfleet workers` runs it (the composition root's runtime and
        webhook provider, this world's sealing key); leaving the block stops it."""
        chosen = (webhooks or self.settings.webhooks).model_copy(
            update={"sealing_key": self.settings.webhooks.sealing_key}
        )
        settings = self.settings.model_copy(update={"webhooks": chosen})
        endpoints = Endpoints(self.kafka_bootstrap, self.database_url)
        routers = [build_router(settings, group=group)]
        async with runtime(
            settings, endpoints, routers, clock=clock, providers=[webhook_objects]
        ) as rt:
            await until_assigned(rt.broker)
            assert rt.webhooks is not None
            yield rt.webhooks.dispatcher
        # the process would have stopped: a dispatcher loop failed (its error is in the log)
        assert not rt.stop.is_set(), "a webhook dispatcher loop failed"

    async def reseller(
        self, reseller_id: str, modes: dict[str, ReceiverMode], *, failures: int = 2
    ) -> dict[str, IssuedSecret]:
        """A reseller with one endpoint per ``modes`` entry, registered with the receiver."""
        await self.commands.create_reseller(reseller_id, reseller_id.title(), "test")
        await eventually(lambda: self.commands.pool.fetchval(
            "SELECT count(*) FROM resellers WHERE id = $1", reseller_id))  # fmt: skip
        issued = {}
        for endpoint_id, mode in modes.items():
            issued[endpoint_id] = secret = await self.commands.add_endpoint(
                reseller_id, self.url(endpoint_id), "test", endpoint_id=endpoint_id
            )
            self.receiver.register(endpoint_id, secret.secret)
            self.receiver.set_mode(endpoint_id, mode, failures=failures)
        await eventually(
            lambda: self.pool.fetchval(
                "SELECT count(*) FROM reseller_webhooks WHERE reseller_id = $1", reseller_id
            ),
            until=lambda n: n == len(modes),
        )
        return issued

    async def sim(self, iccid: str, number: str, reseller_id: str, **columns: Any) -> int:
        """A SIM as the sims projection (another flow) would have it, assigned to the reseller."""
        sim_id: int = await self.pool.fetchval(
            "INSERT INTO sims (iccid, status, current_number, mobility_subscription_id) "
            "VALUES ($1, 'active', $2, $3) RETURNING id",
            iccid,
            number,
            columns.get("mobility_subscription_id", "38106"),
        )
        await self.commands.assign_sims(reseller_id, [iccid], "test")
        await eventually(lambda: self.pool.fetchval(
            "SELECT reseller_id FROM reseller_sims WHERE iccid = $1", iccid))  # fmt: skip
        return sim_id

    async def publish(self, events: Sequence[Event]) -> None:
        await self.bus.emit_many(events)

    async def deliveries(self) -> dict[tuple[str, str], asyncpg.Record]:
        rows = await self.pool.fetch("SELECT * FROM webhook_deliveries")
        return {(r["message_id"], r["endpoint"]): r for r in rows}


def sms(to: str, body: str, *, at: datetime | None = None, **fields: Any) -> SmsReceived:
    return SmsReceived.create(
        producer="simfleet/test",
        time=datetime.now(UTC),
        gateway_id=fields.pop("gateway_id", "gw-1"),
        port=fields.pop("port", "1.01"),
        sender=fields.pop("sender", "+15551230000"),
        to=to,
        body=body,
        received_at=at or datetime.now(UTC),
        **fields,
    )


@contextlib.asynccontextmanager
async def webhook_world(
    settings: Settings, kafka_bootstrap: str, webhooks: WebhookSettings = FAST
) -> AsyncIterator[World]:
    sealing_key = SecretStr(Fernet.generate_key().decode())  # this world's own
    webhooks = webhooks.model_copy(update={"sealing_key": sealing_key})
    settings = settings.model_copy(update={"webhooks": webhooks})
    dsn = settings.postgres.database_url
    assert dsn is not None
    pool = await create_pool(dsn.get_secret_value(), min_size=2, max_size=12)
    broker = build_broker(settings.kafka, kafka_bootstrap)
    await broker.start()
    bus = Bus(broker, settings.kafka.topic_prefix)
    box = SecretBox.of_deployment(settings)
    app, receiver = create_reseller_receiver()
    projections = (ResellersProjection(), DeliveriesProjection())
    try:
        async with (
            projecting(
                projections, bootstrap=kafka_bootstrap, kafka=settings.kafka, pool=pool, bus=bus
            ),
            serve_http(app) as base,
        ):
            commands = ResellerCommands(
                bus=bus, pool=pool, box=box, settings=webhooks, clock=SystemClock()
            )
            yield World(
                settings, kafka_bootstrap, pool, bus, box, receiver, base, commands,
                dsn.get_secret_value(),
            )  # fmt: skip
    finally:
        await broker.stop()
        await pool.close()
