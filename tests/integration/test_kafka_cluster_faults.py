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
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from events.topics import SMS_INBOUND
from infra.bus import Bus
from infra.clock import SystemClock
from infra.dead_letters import DeadLetters
from infra.embedded.apache_kafka import KafkaCluster
from infra.http import serve_http
from infra.kafka import build_broker, ensure_topics
from infra.settings import SecretsSettings, Settings
from producers.skyline.bridge import RETRY_AFTER_S, create_bridge_app
from projections.runner import ProjectionRunner
from projections.sms import InboundSmsProjection
from tests.conftest import isolated_settings
from tests.support.eventually import eventually
from tests.support.gateway_load import Gateways, stored, to_number
from tests.support.kafka_cluster import all_up, leader_of_most, replication, three_brokers
from tests.support.webhook_world import FAST, World, webhook_world

pytestmark = pytest.mark.integration

SECRET = "gw-secret-for-cluster-faults"
GATEWAYS = 8
ROWS = 10  # SMS per push
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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    with three_brokers(Path(tmp_path_factory.mktemp("kafka-cluster"))) as three:
        yield three


@pytest.fixture
def up(cluster: KafkaCluster) -> KafkaCluster:
    return all_up(cluster)


@pytest.fixture
async def cluster_settings(up: KafkaCluster, database_url: str, topic_prefix: str) -> Settings:
    settings = isolated_settings(up.bootstrap, database_url, topic_prefix)
    # Kafka's default group time-outs: the suite's 2 s ones evict members of a busy machine
    # again and again, and the rebalances, not the broker fault, would be what the test measures
    kafka = settings.kafka.model_copy(
        update={"kafka_session_timeout_ms": 10_000, "kafka_heartbeat_interval_ms": 2_000}
    )
    await ensure_topics(up.bootstrap, kafka)
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


@pytest.mark.timeout(900)
async def test_leader_sigkilled_while_20000_sms_are_pushed_loses_and_doubles_nothing(
    cluster_settings: Settings, up: KafkaCluster
) -> None:
    settings, cluster = cluster_settings, up
    topic = SMS_INBOUND.full_name(settings.kafka.topic_prefix)
    assert await replication(cluster.bootstrap, topic) == ({3}, "2")
    total, kill_after = 20_000, 6_000
    async with webhook_world(settings, cluster.bootstrap, PATIENT) as world:
        await fleet(world)
        async with (
            pipeline(settings, cluster.bootstrap, world) as url,
            httpx.AsyncClient(timeout=60) as http,
        ):
            gateways = Gateways(http, url, SECRET, GATEWAYS, ROWS)
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
            rows = await stored(
                world.pool, ids, within=300, bootstrap=cluster.bootstrap, settings=settings
            )
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
    cluster_settings: Settings, up: KafkaCluster
) -> None:
    settings, cluster = cluster_settings, up
    async with webhook_world(settings, cluster.bootstrap, PATIENT) as world:
        await fleet(world)
        async with (
            pipeline(settings, cluster.bootstrap, world) as url,
            httpx.AsyncClient(timeout=60) as http,
        ):
            gateways = Gateways(http, url, SECRET, GATEWAYS, ROWS)
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
            rows = await stored(
                world.pool, ids, within=120, bootstrap=cluster.bootstrap, settings=settings
            )

    refused = gateways.refused(killed_at)
    assert refused, "nothing was refused with two brokers down"
    assert {a.status for a in refused} == {503}
    assert {a.retry_after for a in refused} == {str(RETRY_AFTER_S)}
    # from the first refusal until a broker returned, nothing was acknowledged: one in-sync
    # replica is fewer than min.insync.replicas
    first_refusal = min(a.answered_at for a in refused)
    during = [a for a in gateways.answers if first_refusal <= a.answered_at < back_at]
    assert during, "no push answered while two brokers were down"
    assert all(a.status != 200 for a in during), "acknowledged with one in-sync replica"
    assert not ids - set(rows), f"{len(ids - set(rows))} acknowledged SMS not stored"
    assert len(rows) == len(set(rows)), "an SMS stored twice"
    print(  # noqa: T201
        f"\ntwo down: survivor {survivor}; {len(refused)} pushes refused with 503 "
        f"+ Retry-After; recovered after broker {down[0]} returned"
    )
