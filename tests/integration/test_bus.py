import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from faststream import AckPolicy
from faststream.kafka import KafkaMessage

from events import Event
from events.codec import decode
from events.sim import SimActivationRequested
from events.sms import SmsReceived
from events.topics import SIM_LIFECYCLE, SMS_INBOUND
from infra.bus import Bus
from infra.kafka import build_broker, ensure_topics
from infra.settings import Settings

pytestmark = pytest.mark.integration


async def test_published_event_is_consumed_with_envelope_key_and_headers(
    settings: Settings, topics: list[str], kafka_bootstrap: str
) -> None:
    prefix = settings.kafka.topic_prefix
    broker = build_broker(settings.kafka, kafka_bootstrap)
    received: asyncio.Queue[tuple[Event, Any, dict[str, str], str]] = asyncio.Queue()

    @broker.subscriber(
        SMS_INBOUND.full_name(prefix),
        group_id=f"{prefix}bus-test",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
        session_timeout_ms=2000,
        heartbeat_interval_ms=400,
    )
    async def on_sms(event: Event, msg: KafkaMessage) -> None:
        record: Any = msg.raw_message
        await received.put((event, record.key, msg.headers, record.topic))

    sms = SmsReceived.create(
        producer="simfleet/test",
        time=datetime.now(UTC),
        gateway_id="gw-1",
        port="1.01",
        sender="+15551230000",
        to="5559870000",
        body="hello",
        received_at=datetime(2026, 2, 4, 12, tzinfo=UTC),
    )
    async with broker:
        await broker.start()
        await Bus(broker, prefix).emit(sms)
        event, key, headers, topic = await asyncio.wait_for(received.get(), 30)

    assert event == sms
    assert isinstance(event, SmsReceived)
    assert key == b"+15559870000"
    assert topic == f"{prefix}sms.inbound"
    assert headers["ce_id"] == sms.id
    assert headers["ce_type"] == "sms.received"
    assert headers["ce_correlationid"] == sms.correlationid
    assert headers["content-type"] == "application/cloudevents+json"


async def test_events_route_to_their_topic_keyed_by_subject(
    settings: Settings, topics: list[str], kafka_bootstrap: str
) -> None:
    from aiokafka import AIOKafkaConsumer

    prefix = settings.kafka.topic_prefix
    broker = build_broker(settings.kafka, kafka_bootstrap)
    request = SimActivationRequested.create(
        producer="simfleet/test",
        time=datetime.now(UTC),
        iccid="89012608822000000011",
        imei="356938035643809",
        ref="sheet:2",
    )
    async with broker:
        await broker.start()
        await Bus(broker, prefix).emit_many([request])
    consumer = AIOKafkaConsumer(
        SIM_LIFECYCLE.full_name(prefix),
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    records = [r for rs in batch.values() for r in rs]
    assert [r.key for r in records] == [b"89012608822000000011"]


async def test_topics_ensure_is_idempotent(
    settings: Settings, topics: list[str], kafka_bootstrap: str
) -> None:
    prefix = settings.kafka.topic_prefix
    assert f"{prefix}sms.inbound" in topics
    assert f"{prefix}sms.inbound.dlq" in topics
    assert await ensure_topics(kafka_bootstrap, settings.kafka) == []


async def test_connected_bus_sends_through_aiokafka_and_the_test_broker_still_works(
    settings: Settings, topics: list[str], kafka_bootstrap: str
) -> None:
    from faststream.kafka import TestKafkaBroker

    from infra.bus import _connected_producer

    prefix = settings.kafka.topic_prefix
    broker = build_broker(settings.kafka, kafka_bootstrap)
    assert _connected_producer(broker) is None  # not connected: events would go via publish
    async with broker:
        await broker.start()
        assert _connected_producer(broker) is not None

    # the in-memory broker (pure handler tests) has no aiokafka producer: publish() carries it
    memory = build_broker(settings.kafka, kafka_bootstrap)
    seen: list[Event] = []

    @memory.subscriber(SIM_LIFECYCLE.full_name(prefix), group_id=f"{prefix}memory")
    async def on_request(event: Event) -> None:
        seen.append(event)

    request = SimActivationRequested.create(
        producer="simfleet/test",
        time=datetime.now(UTC),
        iccid="89012608822000000011",
        imei="356938035643809",
        ref="sheet:3",
    )
    async with TestKafkaBroker(memory) as test_broker:
        assert _connected_producer(test_broker) is None
        await Bus(test_broker, prefix).emit(request)
    assert seen == [request]


def activation(n: int) -> SimActivationRequested:
    return SimActivationRequested.create(
        producer="simfleet/test",
        time=datetime.now(UTC),
        iccid="89012608822000000011",  # one SIM: one key, one partition
        imei="356938035643809",
        ref=f"sheet:{n}",
    )


async def test_a_sequence_gap_gives_the_producer_a_new_id_instead_of_failing_for_good(
    settings: Settings, topics: list[str], kafka_bootstrap: str
) -> None:
    """aiokafka spends a batch's sequence number when it fails the batch for want of a leader
    (the whole cluster down longer than request_timeout_ms); the broker then refuses every later
    batch of the partition. Here the number is spent as that failure spends it."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from infra.bus import BrokerUnavailable, _connected_producer

    topic = SIM_LIFECYCLE.full_name(settings.kafka.topic_prefix)
    kafka = settings.kafka.model_copy(update={"kafka_idempotence": True})
    broker = build_broker(kafka, kafka_bootstrap)
    async with broker:
        await broker.start()
        bus = Bus(broker, settings.kafka.topic_prefix, timeout_s=10.0)
        producer = _connected_producer(broker)
        assert producer is not None
        await bus.emit(activation(1))
        for partition in await producer.partitions_for(topic):
            producer._txn_manager.increment_sequence_number(TopicPartition(topic, partition), 1)

        with pytest.raises(BrokerUnavailable, match="OutOfOrderSequenceNumber"):
            await bus.emit(activation(2))
        await bus.emit(activation(2))  # the gateway's retry: under a new producer id
        await bus.emit(activation(3))

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000)
    finally:
        await consumer.stop()
    events = [decode(r.value) for records in batch.values() for r in records]
    assert [e.data.ref for e in events if isinstance(e, SimActivationRequested)] == [
        "sheet:1",
        "sheet:2",
        "sheet:3",
    ]


async def test_a_windowed_bus_produces_concurrent_pushes_together_where_send_would_place_them(
    settings: Settings, topics: list[str], kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bridge's bus: 60 SMS for 60 numbers emitted at once go out in a few produce rounds
    (not a request per few records), each SMS on the partition a plain send gives its key."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from infra.bus import _connected_producer
    from infra.kafka import placed_by_key

    prefix = settings.kafka.topic_prefix
    rounds: list[int] = []
    send_encoded = Bus._send_encoded

    async def counted(self: Bus, records: Any, producer: Any) -> Any:
        rounds.append(len(records))
        return await send_encoded(self, records, producer)

    monkeypatch.setattr(Bus, "_send_encoded", counted)
    sms = [
        SmsReceived.create(
            producer="simfleet/test", time=datetime.now(UTC), gateway_id="gw-1", port="1.01",
            sender="+15551230000", to=f"555987{n:04d}", body=f"code {n}",
            received_at=datetime(2026, 2, 4, 12, tzinfo=UTC),
        )
        for n in range(60)
    ]  # fmt: skip
    broker = build_broker(settings.kafka, kafka_bootstrap)
    async with broker:
        await broker.start()
        bus = Bus(broker, prefix, window_s=0.05)
        await asyncio.gather(*(bus.emit_many([one]) for one in sms))
        producer = _connected_producer(broker)
        assert producer is not None
        topic = SMS_INBOUND.full_name(prefix)
        partitions = sorted(await producer.partitions_for(topic))

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        found: dict[str, int] = {}
        async with asyncio.timeout(30):
            while len(found) < len(sms):
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    found.update({decode(r.value).id: tp.partition for r in records})
    finally:
        await consumer.stop()

    assert sum(rounds) == len(sms)
    assert len(rounds) <= 3  # the first at once, the rest together
    assert found == {
        one.id: placed_by_key(one.subject.encode(), partitions, partitions) for one in sms
    }
