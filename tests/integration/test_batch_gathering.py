"""A batch consumer nobody waits on at once (silence, endpoint health, verification replies) asks
the broker to gather (``infra.kafka.GATHER_BYTES`` within its fetch wait): under a trickle it
takes a window of records per fetch and per batch — one fetch, handler call and offset commit —
where a fetch answered at its first record made a batch of every record or two."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter

from events.sms import SmsReceived
from events.topics import SMS_INBOUND
from infra.bus import Bus
from infra.context import MessageDep
from infra.kafka import GATHER_BYTES, build_broker, consume_batches
from infra.settings import Settings
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 4, 12, tzinfo=UTC)
WAIT_MS = 300


def sms(i: int) -> SmsReceived:
    return SmsReceived.create(
        producer="simfleet/test", time=T0, gateway_id="gw-1", port="1.01",
        sender="+15551230000", to="+15559870001", body=f"message {i}",
        received_at=T0 + timedelta(seconds=i),
    )  # fmt: skip


async def test_under_a_trickle_a_gathering_consumer_takes_a_window_per_batch(
    settings: Settings, kafka_bootstrap: str, bus: Bus
) -> None:
    batches: list[int] = []

    async def handle(msg: MessageDep) -> None:
        batches.append(len(cast(tuple[ConsumerRecord[Any, Any], ...], msg.raw_message)))

    router = KafkaRouter()
    consume_batches(
        router, settings.kafka, (SMS_INBOUND,), "gathering", gather_bytes=GATHER_BYTES,
        fetch_wait_ms=WAIT_MS,
    )(handle)  # fmt: skip
    broker = build_broker(settings.kafka, kafka_bootstrap)
    broker.include_router(router)
    await broker.start()
    try:
        await bus.emit(sms(0))  # read once the group has its partitions
        await eventually(lambda: asyncio.sleep(0, sum(batches)), until=(1).__eq__, within=30)
        batches.clear()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(1, 76):
            await bus.emit(sms(i))
            await asyncio.sleep(0.02)
        trickle_s = loop.time() - started
        await eventually(lambda: asyncio.sleep(0, sum(batches)), until=(75).__eq__)
    finally:
        await broker.stop()
    # a fetch waits out its window unless 256 KiB came first; one may be in flight already
    assert len(batches) <= trickle_s / (WAIT_MS / 1000) + 3 < 75 / 4


async def test_a_batch_consumer_commits_at_most_once_a_second_and_its_last_offsets_when_quiet(
    settings: Settings, kafka_bootstrap: str, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch was an offset commit (a request the broker pays ~1 ms of CPU for); the
    handled offsets now go out at most once a second, and all of them a second after the
    last batch."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    commits: list[dict[TopicPartition, int]] = []
    commit = AIOKafkaConsumer.commit

    async def counted(self: AIOKafkaConsumer, offsets: Any = None) -> None:
        commits.append(dict(offsets or {}))
        await commit(self, offsets)

    monkeypatch.setattr(AIOKafkaConsumer, "commit", counted)
    batches: list[int] = []

    async def handle(msg: MessageDep) -> None:
        batches.append(len(cast(tuple[ConsumerRecord[Any, Any], ...], msg.raw_message)))

    router = KafkaRouter()
    consume_batches(router, settings.kafka, (SMS_INBOUND,), "paced", wait_ms=5, fetch_wait_ms=20)(
        handle
    )
    broker = build_broker(settings.kafka, kafka_bootstrap)
    broker.include_router(router)
    await broker.start()
    try:
        await bus.emit(sms(0))
        await eventually(lambda: asyncio.sleep(0, sum(batches)), until=(1).__eq__, within=30)
        await asyncio.sleep(1.5)  # the first batch's commit, once quiet
        commits.clear()
        batches.clear()
        for i in range(1, 41):
            await bus.emit(sms(i))
            await asyncio.sleep(0.025)  # ~1 s of a trickle: a batch every record or two
        await eventually(lambda: asyncio.sleep(0, sum(batches)), until=(40).__eq__)
        during = len(commits)
        await asyncio.sleep(1.5)
    finally:
        await broker.stop()
    assert len(batches) >= 10
    assert during <= 2
    partition, reached = next(iter(commits[-1].items()))  # one key: one partition
    assert partition.topic == SMS_INBOUND.full_name(settings.kafka.topic_prefix)
    assert reached == 41  # offsets 0-40 handled: the next to read is 41
