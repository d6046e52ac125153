"""A live projection's batch gathers what arrives within KAFKA_PROJECTION_GATHER_MS of its first
records, a slice at a time, and a rebalance's seek back to the checkpoint in between brings no
record twice into one batch (the checkpoint filter only works across batches)."""

from __future__ import annotations

from typing import Any, cast

from aiokafka import ConsumerRecord, TopicPartition

from infra.dead_letters import DeadLetters
from infra.settings import KafkaSettings
from projections.runner import Batch, Fetched, ProjectionRunner
from projections.sms import InboundSmsProjection

TP = TopicPartition("sms.inbound", 0)


def record(offset: int) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord("sms.inbound", 0, offset, 0, 0, None, b"{}", None, 0, 0, [])


class ScriptedConsumer:
    """What the broker hands out, fetch by fetch; then nothing."""

    def __init__(self, *fetches: list[int]) -> None:
        self._fetches = list(fetches)
        self.waits: list[int] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> Batch:
        self.waits.append(timeout_ms)
        if not self._fetches:
            return {}
        return {TP: [record(o) for o in self._fetches.pop(0)]}


def runner(gather_ms: int, consumer: ScriptedConsumer) -> ProjectionRunner:
    kafka = KafkaSettings(kafka_projection_gather_ms=gather_ms)
    built = ProjectionRunner(
        InboundSmsProjection(),
        bootstrap="127.0.0.1:9",
        kafka=kafka,
        pool=cast(Any, None),
        dead_letters=cast(DeadLetters, None),
    )
    built._consumer = cast(Any, consumer)
    return built


def offsets(batch: Fetched) -> list[int]:
    """Every record of the batch, decoded or not (these test values are not events)."""
    return sorted([r.offset for r in batch.records] + [r.offset for r, _ in batch.undecodable])


async def test_records_arriving_within_the_window_join_the_batch() -> None:
    consumer = ScriptedConsumer([3, 4], [5, 6, 7])
    batch = await runner(50, consumer)._read_batch({TP: [record(1), record(2)]})
    assert offsets(batch) == [1, 2, 3, 4, 5, 6, 7]
    assert batch.last == {TP: 7}


async def test_a_seek_back_between_fetches_brings_no_record_twice() -> None:
    consumer = ScriptedConsumer([1, 2, 3, 4], [5])  # rebalanced: read again from offset 1
    batch = await runner(50, consumer)._read_batch({TP: [record(1), record(2), record(3)]})
    assert offsets(batch) == [1, 2, 3, 4, 5]


async def test_no_window_takes_only_what_is_already_buffered() -> None:
    consumer = ScriptedConsumer([3], [4])
    batch = await runner(0, consumer)._read_batch({TP: [record(1)]})
    assert offsets(batch) == [1, 3, 4]
    assert consumer.waits == [0, 0, 0]  # never waits for more: the first empty answer ends it
