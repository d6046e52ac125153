"""Events as a subscriber meets them: records read back from the broker parsed by the
CloudEvents SDK the way docs/subscribers.md says. (That every type is produced by some test and
held to its schema is judged by tests/support/record_contracts.py at the end of the session.)"""

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event, from_structured_event

from events.sim import SimActivationRequested
from events.sms import SmsReceived
from events.topics import SIM_LIFECYCLE, SMS_INBOUND
from infra.bus import Bus
from infra.kafka import build_broker
from infra.settings import Settings

pytestmark = pytest.mark.integration
T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)


async def read_back(settings: Settings, bootstrap: str, topic: str, n: int) -> list[KafkaMessage]:
    consumer = AIOKafkaConsumer(
        settings.kafka.topic_prefix + topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        records: list[Any] = []
        while len(records) < n:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, f"only {len(records)} of {n} records on {topic}"
            records += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    return [KafkaMessage(headers=dict(r.headers), key=r.key, value=r.value) for r in records]


async def test_records_parse_with_the_cloudevents_sdks_structured_reader(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> None:
    sms = SmsReceived.create(
        producer="simfleet/gateway_bridge",
        time=T0,
        gateway_id="00-30-f1-01-02-03",
        port="1.01",
        sender="+15551230000",
        to="+15559870000",
        body="hello",
        received_at=T0,
    )
    activation = SimActivationRequested.create(
        producer="simfleet/bulk_import",
        time=T0,
        iccid="89012608822000000011",
        imei="356938035643809",
        reseller_id="acme",
        ref="sheet-row-2",
    )
    async with build_broker(settings.kafka, kafka_bootstrap) as broker:
        await Bus(broker, settings.kafka.topic_prefix).emit_many([sms, activation])
    for event, topic in ((sms, SMS_INBOUND.name), (activation, SIM_LIFECYCLE.name)):
        (message,) = await read_back(settings, kafka_bootstrap, topic, 1)
        parsed = from_structured_event(message)
        assert parsed.get_id() == event.id
        assert parsed.get_type() == event.type
        assert parsed.get_source() == event.source
        assert parsed.get_subject() == event.subject
        assert parsed.get_time() == event.time
        assert parsed.get_extension("correlationid") == event.correlationid
        assert parsed.get_extension("partitionkey") == event.subject  # the record key
        assert parsed.get_data() == json.loads(event.data.model_dump_json())
        # the pitfall the guide warns of: ce_* headers make auto-detection read binary mode,
        # whose data is the whole structured value rather than the event's data
        misread = from_kafka_event(message)
        assert misread.get_data() != parsed.get_data()
