"""Faults on a three-broker Apache Kafka (replication factor 3, min.insync.replicas 2) while gateways
push through the bridge, the inbound_sms projection and the webhook consumer run throughout:

- the broker leading most ``sms.inbound`` partitions SIGKILLed while 20,000 SMS are pushed: every
  SMS the bridge acknowledged is in ``inbound_sms`` exactly once and reaches the reseller;
- two of three brokers down: the bridge answers 503 with Retry-After (not enough in-sync
  replicas), nothing it acknowledged is missing from ``inbound_sms``, and pushes are accepted
  again once one broker returns.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pydantic import SecretStr

from events.topics import SMS_INBOUND
from infra.clock import SystemClock
from infra.dead_letters import DeadLetters
from infra.embedded_apache_kafka import KafkaCluster
from infra.http import serve_http
from infra.kafka import Bus, build_broker, ensure_topics
from infra.kafka_address import servers
from infra.settings import SecretsSettings, Settings
from producers.gateway_bridge import RETRY_AFTER_S, create_bridge_app
from projections.runner import ProjectionRunner
from projections.sms import InboundSmsProjection
from tests.conftest import isolated_settings
from tests.support.eventually import eventually
from tests.support.webhook_world import FAST, World, webhook_world

pytestmark = pytest.mark.integration

SECRET = "gw-secret-for-cluster-faults"
GATEWAYS = 8
ROWS = 10  # SMS per push
T0 = 1_763_900_000
# the test world's quick retries, but no delivery given up (FAST's 30 s maximum age) while the
# broker fails over on a busy machine, and leases long enough not to be taken over meanwhile
PATIENT = FAST.model_copy(
    update={
        "max_age_s": 3600.0,
        "timeout_s": 5.0,
        "lease_margin_s": 120.0,
        "takeover_grace_s": 10.0,
    }
)


@dataclass(frozen=True)
class Push:
    gateway: int
    number: int

    def payload(self) -> dict[str, Any]:
        rows = [
            [0, f"{row + 1}.01", T0 + self.number, "+15551230000", to_number(self.gateway),
             f"gw {self.gateway} push {self.number} row {row}"]
            for row in range(ROWS)
        ]  # fmt: skip
        return {"type": "recv-sms", "sms_num": len(rows), "sms": rows}


def to_number(gateway: int) -> str:
    return f"+1555987{gateway:04d}"


@dataclass
class Answer:
    push: Push
    status: int
    retry_after: str | None
    ids: list[str]
    sent_at: float
    answered_at: float


@dataclass
class Gateways:
    """``GATEWAYS`` gateways, each pushing its next SMS as soon as the last push was answered."""

    http: httpx.AsyncClient
    url: str
    answers: list[Answer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def send(self, push: Push) -> Answer:
        sent_at = time.monotonic()
        try:
            response = await self.http.post(f"{self.url}/s/{SECRET}/sms", json=push.payload())
        except httpx.TimeoutException:
            return Answer(push, 0, None, [], sent_at, time.monotonic())
        ids = response.json().get("ids", []) if response.status_code == 200 else []
        retry_after = response.headers.get("retry-after")
        return Answer(push, response.status_code, retry_after, ids, sent_at, time.monotonic())

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._push(g)) for g in range(GATEWAYS)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _push(self, gateway: int) -> None:
        number = 0
        while not self._stop.is_set():
            self.answers.append(await self.send(Push(gateway, number)))
            number += 1

    def acknowledged(self, since: float = 0.0) -> int:
        return sum(len(a.ids) for a in self.answers if a.status == 200 and a.sent_at >= since)

    def refused(self, since: float) -> list[Answer]:
        return [a for a in self.answers if a.status != 200 and a.sent_at >= since]

    async def until(self, probe: Any, within: float = 120.0) -> None:
        async def holds() -> bool:
            return bool(probe())

        await eventually(holds, within=within, interval=0.1)

    async def retry_refused(self) -> list[Answer]:
        """What a gateway does with a refused push: the same SMS again until accepted."""
        retried = []
        for push in [a.push for a in self.answers if a.status != 200]:

            async def resend(push: Push = push) -> Answer:
                return await self.send(push)

            retried.append(await eventually(resend, until=lambda a: a.status == 200, within=60))
        return retried


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    three = KafkaCluster(Path(tmp_path_factory.mktemp("kafka-cluster")), brokers=3)
    three.start()
    try:
        yield three
    finally:
        three.stop()


@pytest.fixture
def all_up(cluster: KafkaCluster) -> KafkaCluster:
    """Each test starts on three running brokers, whatever the one before left."""
    for node in cluster.broker_nodes:
        if not node.running:
            cluster.restart(node.node_id, wait=False)
    cluster.wait_ready()
    return cluster


@pytest.fixture
async def cluster_settings(all_up: KafkaCluster, database_url: str, topic_prefix: str) -> Settings:
    settings = isolated_settings(all_up.bootstrap, database_url, topic_prefix)
    # Kafka's default group time-outs: the suite's 2 s ones evict members of a busy machine
    # again and again, and the rebalances, not the broker fault, would be what the test measures
    kafka = settings.kafka.model_copy(
        update={"kafka_session_timeout_ms": 10_000, "kafka_heartbeat_interval_ms": 2_000}
    )
    await ensure_topics(all_up.bootstrap, kafka)
    return settings.model_copy(
        update={"kafka": kafka, "secrets": SecretsSettings(gateway_secret=SecretStr(SECRET))}
    )


@contextlib.asynccontextmanager
async def pipeline(settings: Settings, bootstrap: str, world: World) -> AsyncIterator[str]:
    """The bridge (its publishes time out after 5 s into a 503), the inbound_sms projection and
    the webhook consumer; yields the bridge's URL."""
    broker = build_broker(settings.kafka, bootstrap)
    async with broker:
        bus = Bus(broker, settings.kafka.topic_prefix, timeout_s=5.0)
        runner = ProjectionRunner(
            InboundSmsProjection(),
            bootstrap=bootstrap,
            kafka=settings.kafka,
            pool=world.pool,
            dead_letters=DeadLetters(bus, "inbound_sms"),
            retry_delay_s=0.25,
        )
        projecting = asyncio.create_task(runner.run())
        try:
            async with (
                world.consumer(),
                serve_http(create_bridge_app(settings, bus, SystemClock())) as url,
            ):
                yield url
                assert not projecting.done(), "the projection gave up"
        finally:
            projecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await projecting


async def fleet(world: World) -> None:
    """One reseller per gateway's SIM, each with one endpoint: deliveries run in parallel."""
    for gateway in range(GATEWAYS):
        await world.reseller(f"r{gateway}", {f"hook{gateway}": "ok"})
        await world.sim(f"89012600000000{gateway:05d}", to_number(gateway), f"r{gateway}")


def delivered(world: World) -> list[str]:
    return [i for gateway in range(GATEWAYS) for i in world.receiver.ids(f"hook{gateway}")]


async def stored(pool: asyncpg.Pool, ids: set[str], within: float) -> list[str]:
    """inbound_sms's message ids once they include ``ids`` (or after ``within``), and a moment
    later, room for a late duplicate to show."""

    async def rows() -> list[str]:
        return [
            str(r["message_id"]) for r in await pool.fetch("SELECT message_id FROM inbound_sms")
        ]

    with contextlib.suppress(AssertionError):
        await eventually(rows, until=lambda r: ids <= set(r), within=within, interval=0.5)
    await asyncio.sleep(1.0)
    return await rows()


async def leader_of_most(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers(bootstrap))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    leaders = collections.Counter(int(p["leader"]) for p in described["partitions"])
    return leaders.most_common(1)[0][0]


async def replication(bootstrap: str, topic: str) -> tuple[set[int], str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers(bootstrap))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})]
        )
    finally:
        await admin.close()
    factors = {len(p["replicas"]) for p in described["partitions"]}
    return factors, {e[0]: e[1] for e in response.resources[0][4]}["min.insync.replicas"]


@pytest.mark.timeout(900)
async def test_leader_sigkilled_while_20000_sms_are_pushed_loses_and_doubles_nothing(
    cluster_settings: Settings, all_up: KafkaCluster
) -> None:
    settings, cluster = cluster_settings, all_up
    topic = SMS_INBOUND.full_name(settings.kafka.topic_prefix)
    assert await replication(cluster.bootstrap, topic) == ({3}, "2")
    total, kill_after = 20_000, 6_000
    async with webhook_world(settings, cluster.bootstrap, PATIENT) as world:
        await fleet(world)
        async with (
            pipeline(settings, cluster.bootstrap, world) as url,
            httpx.AsyncClient(timeout=60) as http,
        ):
            gateways = Gateways(http, url)
            gateways.start()
            await gateways.until(lambda: gateways.acknowledged() >= kill_after)
            victim = await leader_of_most(cluster.bootstrap, topic)
            killed_at = time.monotonic()
            cluster.kill(victim)  # pushes in flight, leaderships to move
            await gateways.until(lambda: gateways.acknowledged() >= total, within=600)
            await gateways.stop()
            retried = await gateways.retry_refused()
            acknowledged = [a for a in gateways.answers + retried if a.status == 200]
            ids = {i for a in acknowledged for i in a.ids}
            rows = await stored(world.pool, ids, within=300)
            with contextlib.suppress(AssertionError):
                await eventually(
                    lambda: asyncio.sleep(0, delivered(world)),  # a plain value, awaitable
                    until=lambda got: ids <= set(got),
                    within=300,
                    interval=0.5,
                )
            webhooks = delivered(world)

    assert len(ids) >= total
    assert len(ids) == ROWS * len({a.push for a in acknowledged})
    missing = ids - set(rows)
    assert not missing, f"{len(missing)} acknowledged SMS not in inbound_sms"
    assert len(rows) == len(set(rows)) == len(ids), "an SMS stored twice"
    undelivered = ids - set(webhooks)
    assert not undelivered, f"{len(undelivered)} acknowledged SMS without a webhook"
    # at least once: a repeat only ever under the message's own webhook-id (never another one)
    assert set(webhooks) == ids
    refused_after_kill = gateways.refused(killed_at)
    print(  # noqa: T201  (this run's figures, shown with pytest -s)
        f"\nleader kill: broker {victim} killed after {kill_after} SMS; {len(ids)} SMS "
        f"acknowledged; {len(refused_after_kill)} pushes refused after the kill and retried; "
        f"{len(webhooks)} webhooks ({len(webhooks) - len(ids)} repeats under their own id)"
    )


@pytest.mark.timeout(600)
async def test_two_of_three_brokers_down_refuses_with_retry_after_and_recovers(
    cluster_settings: Settings, all_up: KafkaCluster
) -> None:
    settings, cluster = cluster_settings, all_up
    async with webhook_world(settings, cluster.bootstrap, PATIENT) as world:
        await fleet(world)
        async with (
            pipeline(settings, cluster.bootstrap, world) as url,
            httpx.AsyncClient(timeout=60) as http,
        ):
            gateways = Gateways(http, url)
            gateways.start()
            await gateways.until(lambda: gateways.acknowledged() >= 500)
            survivor, *down = [n.node_id for n in cluster.broker_nodes]
            cluster.kill(down[0])
            cluster.kill(down[1])
            killed_at = time.monotonic()
            await gateways.until(lambda: len(gateways.refused(killed_at)) >= 2 * GATEWAYS)
            back_at = time.monotonic()
            cluster.restart(down[0])
            await gateways.until(lambda: gateways.acknowledged(since=back_at) >= 200, within=180)
            await gateways.stop()
            retried = await gateways.retry_refused()
            acknowledged = [a for a in gateways.answers + retried if a.status == 200]
            ids = {i for a in acknowledged for i in a.ids}
            rows = await stored(world.pool, ids, within=120)

    refused = gateways.refused(killed_at)
    assert refused, "nothing was refused with two brokers down"
    assert {a.status for a in refused} == {503}
    assert {a.retry_after for a in refused} == {str(RETRY_AFTER_S)}
    # from the first refusal until a broker returned, nothing was acknowledged: one in-sync
    # replica is fewer than min.insync.replicas
    first_refusal = min(a.answered_at for a in refused)
    during = [a for a in gateways.answers if first_refusal <= a.answered_at < back_at]
    assert during, "no push answered while two brokers were down"
    assert all(a.status == 503 for a in during), "acknowledged with one in-sync replica"
    assert not ids - set(rows), f"{len(ids - set(rows))} acknowledged SMS not stored"
    assert len(rows) == len(set(rows)), "an SMS stored twice"
    print(  # noqa: T201
        f"\ntwo down: survivor {survivor}; {len(refused)} pushes refused with 503 "
        f"+ Retry-After; recovered after broker {down[0]} returned"
    )
