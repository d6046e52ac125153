import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaRouter
from prometheus_client import REGISTRY

from events import Event
from events.sms import SmsReceived
from events.topics import SMS_INBOUND
from infra.bus import Bus
from infra.dead_letters import DeadLetterMiddleware
from infra.kafka import build_broker, consume
from infra.settings import Settings

pytestmark = pytest.mark.integration


def metric(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def sms(body: str) -> SmsReceived:
    return SmsReceived.create(
        producer="t",
        time=datetime.now(UTC),
        gateway_id="gw",
        sender="+15551230000",
        to="+15559870000",
        body=body,
        received_at=datetime(2026, 2, 4, tzinfo=UTC),
    )


async def test_a_failing_handler_parks_the_record_and_the_partition_moves_on(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> None:
    handled: asyncio.Queue[str] = asyncio.Queue()
    router = KafkaRouter(middlewares=(DeadLetterMiddleware,))

    @consume(router, settings.kafka, SMS_INBOUND, "dlq-test")
    async def on_sms(event: Event) -> None:
        assert isinstance(event, SmsReceived)
        if event.data.body == "boom":
            raise RuntimeError("cannot handle boom")
        await handled.put(event.data.body)

    broker = build_broker(settings.kafka, kafka_bootstrap)
    broker.include_router(router)
    topic = SMS_INBOUND.full_name(settings.kafka.topic_prefix)
    async with broker:
        broker.context.set_global("bus", Bus(broker, settings.kafka.topic_prefix))
        await broker.start()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for value in (
                sms("first").model_dump_json().encode(),
                sms("boom").model_dump_json().encode(),
                b"\x00garbage",
                sms("last").model_dump_json().encode(),
            ):
                await producer.send_and_wait(topic, value, partition=0)
        finally:
            await producer.stop()
        got = [await asyncio.wait_for(handled.get(), 30) for _ in range(2)]
    assert got == ["first", "last"]

    dlq = AIOKafkaConsumer(
        f"{topic}.dlq", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await dlq.start()
    try:
        batch = await dlq.getmany(timeout_ms=5000)
    finally:
        await dlq.stop()
    letters = {dict(r.headers)["dlq_offset"]: r for rs in batch.values() for r in rs}
    assert set(letters) == {b"1", b"2"}
    group = f"{settings.kafka.topic_prefix}dlq-test"
    assert metric("simfleet_events_consumed_total", consumer=group) == 2
    assert metric("simfleet_events_failed_total", consumer=group) == 2
    lag = metric("simfleet_consumer_lag", consumer=group, topic=topic, partition="0")
    assert lag is not None
    assert lag >= 0
    assert b"cannot handle boom" in dict(letters[b"1"].headers)["dlq_error"]
    assert letters[b"2"].value == b"\x00garbage"


async def test_an_outage_is_waited_out_and_poison_parked_by_the_middleware(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> None:
    """A Postgres restart under a live request is waited out (the handler runs again and the
    record is not parked); a missing column is a bug in the data path and is parked."""
    handled: asyncio.Queue[str] = asyncio.Queue()
    restarts = [asyncpg.CannotConnectNowError("the database system is starting up")] * 2
    router = KafkaRouter(middlewares=(DeadLetterMiddleware,))

    @consume(router, settings.kafka, SMS_INBOUND, "dlq-outage-test")
    async def on_sms(event: Event) -> None:
        assert isinstance(event, SmsReceived)
        if event.data.body == "during restart" and restarts:
            raise restarts.pop()
        if event.data.body == "missing column":
            raise asyncpg.UndefinedColumnError('column "x" does not exist')
        await handled.put(event.data.body)

    broker = build_broker(settings.kafka, kafka_bootstrap)
    broker.include_router(router)
    topic = SMS_INBOUND.full_name(settings.kafka.topic_prefix)
    async with broker:
        broker.context.set_global("bus", Bus(broker, settings.kafka.topic_prefix))
        await broker.start()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for body in ("during restart", "missing column", "after"):
                await producer.send_and_wait(
                    topic, sms(body).model_dump_json().encode(), partition=0
                )
        finally:
            await producer.stop()
        got = [await asyncio.wait_for(handled.get(), 30) for _ in range(2)]
    assert got == ["during restart", "after"]
    assert restarts == []

    dlq = AIOKafkaConsumer(
        f"{topic}.dlq", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await dlq.start()
    try:
        batch = await dlq.getmany(timeout_ms=5000)
    finally:
        await dlq.stop()
    errors = [dict(r.headers)["dlq_error"] for rs in batch.values() for r in rs]
    assert len(errors) == 1
    assert errors[0].startswith(b"UndefinedColumnError")
