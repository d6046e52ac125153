"""Topics carry their replication, min.insync.replicas and retention; ``simfleet topics ensure``
repairs drift; publishers are idempotent; consumer lag is the broker's (end - committed)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from events.topics import GATEWAY_REJECTED, RESELLER_REGISTRY, SMS_INBOUND
from infra.http import serve_http
from infra.kafka import build_broker
from infra.kafka_groups import delete_retired_groups
from infra.kafka_lag import LagMeter
from infra.kafka_topics import TopicReport, raise_errors, reconcile_topics, replication_for
from infra.ops import ops_app
from infra.settings import KafkaSettings, Settings
from tests.support.eventually import eventually
from tests.support.lagging import group_left_behind

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def topic_configs(bootstrap: str, name: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        (resource,) = response.resources
        return {entry[0]: entry[1] for entry in resource[4]}
    finally:
        await admin.close()


def test_replication_is_min_3_brokers_and_min_isr_one_less() -> None:
    kafka = KafkaSettings()
    assert replication_for(kafka, 1) == (1, 1)
    assert replication_for(kafka, 2) == (2, 1)
    assert replication_for(kafka, 3) == (3, 2)
    assert replication_for(kafka, 5) == (3, 2)
    pinned = KafkaSettings(kafka_replication_factor=2, kafka_min_insync_replicas=2)
    assert replication_for(pinned, 5) == (2, 2)


async def test_topics_carry_their_retention_and_the_registry_is_kept_whole(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> None:
    prefix = settings.kafka.topic_prefix
    sms = await topic_configs(kafka_bootstrap, SMS_INBOUND.full_name(prefix))
    registry = await topic_configs(kafka_bootstrap, RESELLER_REGISTRY.full_name(prefix))
    assert sms["retention.ms"] == str(settings.kafka.kafka_default_retention_ms)
    assert sms["min.insync.replicas"] == "1"  # one broker: RF 1
    assert registry["retention.ms"] == "-1"
    assert registry["cleanup.policy"] == "delete"


async def test_topics_ensure_reports_and_repairs_drift(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> None:
    prefix = settings.kafka.topic_prefix
    sms, rejected = SMS_INBOUND.full_name(prefix), GATEWAY_REJECTED.full_name(prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        # someone shortened retention by hand, and the rejected topic lost its partitions' spec
        altered = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, sms, {"retention.ms": "60000"})]
        )
        raise_errors("altering", altered)
        raise_errors("growing", [await admin.create_partitions({rejected: NewPartitions(2)})])
    finally:
        await admin.close()
    settings.kafka.kafka_partitions = {GATEWAY_REJECTED.name: 4}

    def both_seen(report: TopicReport) -> bool:
        return {(d.topic, d.setting) for d in report.drifts} >= {
            (sms, "retention.ms"),
            (rejected, "partitions"),
        }

    # the broker applies altered metadata asynchronously
    checked = await eventually(
        lambda: reconcile_topics(kafka_bootstrap, settings.kafka, repair=False), until=both_seen
    )
    found = {(d.topic, d.setting): d for d in checked.drifts}
    assert found[(sms, "retention.ms")].found == "60000"
    assert found[(rejected, "partitions")].found == "2"
    assert not any(d.repaired for d in checked.drifts)

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOPIC_PREFIX": prefix,
        "KAFKA_DEFAULT_PARTITIONS": "3",
        "KAFKA_PARTITIONS": '{"gateway.rejected": 4}',
        "DATABASE_URL": str(settings.postgres.database_url.get_secret_value())
        if settings.postgres.database_url
        else "",
    }
    ensure = [sys.executable, "-m", "simfleet.cli", "topics", "ensure"]
    done = await asyncio.to_thread(
        subprocess.run, ensure, env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"drift: {sms}: retention.ms is 60000, wanted 604800000: repaired" in done.stdout
    assert f"drift: {rejected}: partitions is 2, wanted 4: repaired" in done.stdout

    await eventually(
        lambda: reconcile_topics(kafka_bootstrap, settings.kafka, repair=False),
        until=lambda report: report.drifts == [],
    )
    assert (await topic_configs(kafka_bootstrap, sms))["retention.ms"] == "604800000"


async def test_every_publisher_is_idempotent(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> None:
    from infra.bus import _connected_producer

    broker = build_broker(settings.kafka, kafka_bootstrap)
    await broker.start()
    try:
        producer = _connected_producer(broker)
        assert producer is not None
        # the broker handed out a producer id: sends are deduplicated by sequence number
        txn = producer._txn_manager
        assert txn is not None
        assert txn.producer_id >= 0
    finally:
        await broker.stop()


async def test_consumer_lag_is_end_offsets_minus_committed_on_metrics(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> None:
    prefix = settings.kafka.topic_prefix
    topic, group = GATEWAY_REJECTED.full_name(prefix), f"{prefix}lag-probe"
    await group_left_behind(kafka_bootstrap, topic, group, records=7, committed=2)

    meter = LagMeter(kafka_bootstrap, settings.kafka, ttl_s=0)
    assert (await meter.lags() or {}).get(group) == 5
    async with serve_http(ops_app({}, meter.lags)) as url, httpx.AsyncClient(base_url=url) as http:
        metrics = (await http.get("/metrics")).text
    assert f'simfleet_consumer_group_lag{{group="{group}"}} 5.0' in metrics


async def test_a_retired_group_is_deleted_and_no_longer_shows_lag(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> None:
    """A group left with committed offsets (as each projection's own group was, before they
    shared the projector's) would read as growing lag for days; one still consumed is kept."""
    prefix = settings.kafka.topic_prefix
    topic = GATEWAY_REJECTED.full_name(prefix)
    retired, alive = f"{prefix}retired-probe", f"{prefix}alive-probe"
    await group_left_behind(kafka_bootstrap, topic, retired, records=3, committed=1)
    meter = LagMeter(kafka_bootstrap, settings.kafka, ttl_s=0)
    assert retired in (await meter.lags() or {})
    member = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=alive)

    async def joined() -> set[TopicPartition]:
        return set(member.assignment())

    await member.start()
    try:
        await eventually(joined)
        deleted = await delete_retired_groups(
            kafka_bootstrap, settings.kafka, [retired, alive, f"{prefix}never-was"]
        )
    finally:
        await member.stop()

    assert deleted == [retired]
    assert retired not in (await meter.lags() or {})
