"""The three-broker Apache Kafka of the fault tests (replication factor 3, min.insync.replicas 2,
plus a controller) and what the tests ask it: who leads a topic, how it is replicated."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from infra.embedded.apache_kafka import KafkaCluster
from infra.kafka_address import servers
from tests.support.eventually import eventually


@contextlib.contextmanager
def three_brokers(directory: Path) -> Iterator[KafkaCluster]:
    cluster = KafkaCluster(directory, brokers=3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def all_up(cluster: KafkaCluster) -> KafkaCluster:
    """Every node running again, whatever a test before left: a test starts on three brokers."""
    for node in cluster.nodes:
        if not node.running:
            cluster.restart(node.node_id, wait=False)
    cluster.wait_ready()
    return cluster


def kill_all(cluster: KafkaCluster) -> None:
    """SIGKILL every node, controller included: no controlled shutdown, logs as a crash leaves
    them (the next start recovers them)."""
    for node in cluster.nodes:
        cluster.kill(node.node_id)


def stop_all(cluster: KafkaCluster) -> None:
    """SIGTERM: the brokers' controlled shutdown (the controller still up), then the controller."""
    cluster.stop()


async def _led_partitions(admin: AIOKafkaAdminClient, topic: str) -> list[dict[str, Any]]:
    """The topic's partitions once the broker asked knows them all led: a topic just created
    (or a cluster with a node just restarted) can be described by a broker whose metadata has
    not caught up yet, with no partitions or no leader."""

    async def described() -> list[dict[str, Any]]:
        (topic_description,) = await admin.describe_topics([topic])
        partitions: list[dict[str, Any]] = topic_description["partitions"]
        return partitions

    return await eventually(
        described,
        until=lambda ps: bool(ps) and all(p["leader"] >= 0 for p in ps),
        within=30,
        interval=0.2,
    )


async def leader_of_most(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers(bootstrap))
    await admin.start()
    try:
        partitions = await _led_partitions(admin, topic)
    finally:
        await admin.close()
    leaders = collections.Counter(int(p["leader"]) for p in partitions)
    return leaders.most_common(1)[0][0]


async def replication(bootstrap: str, topic: str) -> tuple[set[int], str]:
    """The topic's replica counts (one per partition, as a set) and its min.insync.replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers(bootstrap))
    await admin.start()
    try:
        partitions = await _led_partitions(admin, topic)
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})]
        )
    finally:
        await admin.close()
    factors = {len(p["replicas"]) for p in partitions}
    return factors, {e[0]: e[1] for e in response.resources[0][4]}["min.insync.replicas"]
