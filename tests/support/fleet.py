"""A running provisioning fleet for integration tests: the Helix sandbox over real HTTP, a real
broker with the four provisioning routers, and the sims + helix_log projections on Postgres.

Run by the composition root's runtime (``simfleet.app.runtime``): the routers come from
``build_router(settings)`` and find ``bus``, ``pool``, ``clock``, ``settings`` and ``helix`` in the
broker's context; only the Helix client is the test's own (patient with the sandbox's faults).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import SecretStr

from consumers import provisioning
from events import decode
from events.topics import SIM_LIFECYCLE, Topic
from infra.bus import Bus
from infra.clock import SystemClock
from infra.helix.client import HelixClient
from infra.http import serve_http
from infra.retry import RetryPolicy
from infra.settings import HelixSettings, Settings
from producers.bulk_import import ImportReport, import_sims, parse_rows
from projections.helix_log import HelixLogProjection
from projections.sims import SimsProjection
from sandbox.helix import HelixSandbox, create_helix_sandbox, sandbox_of
from sandbox.helix_world import HelixWorld
from simfleet.app import Runtime, runtime
from simfleet.endpoints import Endpoints
from tests.support.projecting import projecting

CLIENT_ID = "auth0-client-Fleet7"
USERNAME = "ops@simfleet.example"
GRANT_PASSWORD = "fl33t-gr4nt-Secret-9"
# enough attempts that a 20 % fault rate never exhausts them (0.2**10), waits in milliseconds
PATIENT = RetryPolicy(
    max_attempts=10, base_delay_s=0.01, max_delay_s=0.05, budget_s=20.0, max_retry_after_s=0.2
)


def helix_settings(url: str, **overrides: Any) -> HelixSettings:
    fields: dict[str, Any] = {
        "api_base": url,
        "token_url": f"{url}/oauth/token",
        "client_id": CLIENT_ID,
        "audience": "https://hx.example/api",
        "grant_username": USERNAME,
        "grant_password": SecretStr(GRANT_PASSWORD),
        "activation_client_id": 230,
        "plan_id": 985,
        "ban": "BAN-1",
        "fan": "FAN-1",
        "timeout_s": 2.0,
        "rate_limit_per_s": 2000.0,
        "concurrency": 4,
        "number_wait_s": 5.0,
        "number_poll_s": 0.1,
    }
    return HelixSettings(**(fields | overrides))


@dataclass
class Fleet:
    settings: Settings
    bootstrap: str
    world: HelixWorld
    sandbox: HelixSandbox
    pool: asyncpg.Pool
    bus: Bus
    helix: HelixClient
    clock: SystemClock = field(default_factory=SystemClock)

    async def import_csv(self, text: str) -> ImportReport:
        return await import_sims(parse_rows(text.encode(), "sims.csv"), self.bus, self.clock)

    async def statuses(self) -> dict[str, str]:
        rows = await self.pool.fetch("SELECT iccid, status FROM sims")
        return {r["iccid"]: r["status"] for r in rows}

    async def sim(self, iccid: str) -> asyncpg.Record:
        return await self.pool.fetchrow("SELECT * FROM sims WHERE iccid = $1", iccid)

    async def records(self, topic: Topic = SIM_LIFECYCLE) -> list[ConsumerRecord[Any, Any]]:
        return await read_topic(self.bootstrap, self.settings, topic)

    async def events(self, topic: Topic = SIM_LIFECYCLE) -> list[Any]:
        return [decode(r.value) for r in await self.records(topic)]

    async def dead_letters(self) -> int:
        return len(await read_topic(self.bootstrap, self.settings, SIM_LIFECYCLE.dlq))

    async def projected(self, projection: str, topic: Topic) -> int:
        """Records of ``topic`` the projection has read (applied or skipped)."""
        applied = await self.pool.fetchval(
            'SELECT coalesce(sum("offset" + 1), 0) FROM projection_checkpoints '
            "WHERE projection = $1 AND topic = $2",
            projection,
            topic.full_name(self.settings.kafka.topic_prefix),
        )
        return int(applied)


async def read_topic(
    bootstrap: str, settings: Settings, topic: Topic
) -> list[ConsumerRecord[Any, Any]]:
    """Every record on the topic right now, all partitions."""
    name = topic.full_name(settings.kafka.topic_prefix)
    partitions = settings.kafka.partitions_for(topic.name.removesuffix(".dlq"), topic.partitions)
    tps = [TopicPartition(name, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[ConsumerRecord[Any, Any]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=500)
            found += [r for rs in batch.values() for r in rs]
        return found
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def running_fleet(
    settings: Settings, bootstrap: str, database_url: str, world: HelixWorld, **helix: Any
) -> AsyncIterator[Fleet]:
    """The provisioning consumer through the composition root's runtime, its Helix client the
    test's: against this world's sandbox, patient with its faults."""
    app = create_helix_sandbox(world)
    async with serve_http(app) as url:
        pool_size = {"database_pool_min": 2, "database_pool_max": 12}
        settings = settings.model_copy(
            update={
                "helix": helix_settings(url, **helix),
                "postgres": settings.postgres.model_copy(update=pool_size),
            }
        )

        @contextlib.asynccontextmanager
        async def patient_helix(rt: Runtime) -> AsyncIterator[None]:
            async with httpx.AsyncClient(base_url=url, timeout=settings.helix.timeout_s) as http:
                rt.helix = HelixClient(http, settings.helix, rt.pool, rt.bus.emit, policy=PATIENT)
                yield

        endpoints = Endpoints(bootstrap, database_url)
        routers = [provisioning.build_router(settings)]
        async with runtime(
            settings, endpoints, routers, clock=SystemClock(), providers=[patient_helix]
        ) as rt:
            assert rt.helix is not None
            fleet = Fleet(settings, bootstrap, world, sandbox_of(app), rt.pool, rt.bus, rt.helix)
            async with projecting(
                (SimsProjection(), HelixLogProjection()),
                bootstrap=bootstrap, kafka=settings.kafka, pool=rt.pool, bus=rt.bus,
            ):  # fmt: skip
                yield fleet
