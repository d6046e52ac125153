"""Tansu stays the zero-dependency broker of ``make run`` where no JVM is: the suite runs on Apache
Kafka, so this keeps one end-to-end path on Tansu from rotting — the composition root picks Tansu
(without the idempotent producer it refuses, with short fetch waits and one partition a
topic), the bridge acknowledges an SMS and the projector
stores and archives it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr

from events.topics import SMS_INBOUND
from infra.http import free_port
from infra.kafka_address import servers
from infra.settings import TANSU_FETCH_WAIT_MS, KafkaSettings, SecretsSettings, Settings
from simfleet.endpoints import resolve_endpoints
from tests.support.eventually import eventually
from tests.support.stack import components, running

pytestmark = pytest.mark.integration


async def test_an_sms_pushed_through_the_bridge_is_stored_on_tansu(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    secret = "tansu-smoke-gateway-secret"
    on_tansu = settings.model_copy(
        update={
            "state_dir": tmp_path,
            "bridge_port": free_port(),
            "secrets": SecretsSettings(gateway_secret=SecretStr(secret)),
            "kafka": KafkaSettings(
                embedded_broker="tansu",
                topic_prefix=settings.kafka.topic_prefix,
                kafka_default_partitions=3,
            ),
        }
    )
    with resolve_endpoints(on_tansu) as endpoints:
        assert any("Tansu" in line for line in endpoints.embedded), endpoints.embedded
        assert on_tansu.kafka.kafka_idempotence is False
        # Tansu holds a fetch for its whole wait: a waited-on consumer must not idle 500 ms
        assert on_tansu.kafka.kafka_fetch_wait_ms == TANSU_FETCH_WAIT_MS
        push = {"to": "+16465550001", "from": "+15551230000", "body": "hello from tansu"}
        parts = components("projector", "bridge")
        async with (
            running(on_tansu, endpoints.kafka_bootstrap, database_url, parts) as rt,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{on_tansu.bridge_port}") as bridge,
        ):
            answer = await bridge.post(
                "/sms/simple",
                json=push | {"gateway_id": "gw-1"},
                headers={"x-gateway-secret": secret},
            )
            assert answer.status_code == 200, answer.text
            [message_id] = answer.json()["ids"]

            async def stored() -> tuple[object, object]:
                body = await rt.pool.fetchval(
                    "SELECT body FROM inbound_sms WHERE message_id = $1", message_id
                )
                archived = await rt.pool.fetchval(
                    "SELECT 1 FROM event_log WHERE id = $1", message_id
                )
                return body, archived

            body, _ = await eventually(stored, until=all, within=30, interval=0.2)
            # one partition a topic there, whatever the default count (its fetches list every
            # batch a partition holds)
            partitions = await _partitions(endpoints.kafka_bootstrap, on_tansu.kafka)
    assert body == "hello from tansu"
    assert partitions == 1


async def _partitions(bootstrap: str, kafka: KafkaSettings) -> int:
    """sms.inbound's partition count as the broker reports it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # the cluster's metadata, all topics
        return len(consumer.partitions_for_topic(SMS_INBOUND.full_name(kafka.topic_prefix)) or ())
    finally:
        await consumer.stop()
