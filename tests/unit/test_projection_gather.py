"""A projection's batch is what is buffered after its first records (the broker gathered them),
read a slice at a time without waiting for more, and a rebalance's seek back to the checkpoint
in between brings no record twice into one batch (the checkpoint filter only works across
batches)."""

from __future__ import annotations

from typing import Any, cast

from aiokafka import ConsumerRecord, TopicPartition

from events.codec import decoder_for
from events.topics import SMS_INBOUND
from projections.batches import MAX_RECORDS, Batch, BatchReader, Fetched

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


def reader(consumer: ScriptedConsumer) -> BatchReader:
    return BatchReader(
        cast(Any, consumer),
        {SMS_INBOUND.name: decoder_for(SMS_INBOUND)},
        {},
        max_records=MAX_RECORDS,
    )


def offsets(batch: Fetched) -> list[int]:
    """Every record of the batch, decoded or not (these test values are not events)."""
    return sorted([r.offset for r in batch.records] + [r.offset for r, _ in batch.undecodable])


async def test_what_is_buffered_after_the_first_records_joins_the_batch() -> None:
    consumer = ScriptedConsumer([3, 4], [5, 6, 7])
    batch = await reader(consumer).read_batch({TP: [record(1), record(2)]})
    assert offsets(batch) == [1, 2, 3, 4, 5, 6, 7]
    assert batch.last == {TP: 7}


async def test_a_seek_back_between_fetches_brings_no_record_twice() -> None:
    consumer = ScriptedConsumer([1, 2, 3, 4], [5])  # rebalanced: read again from offset 1
    batch = await reader(consumer).read_batch({TP: [record(1), record(2), record(3)]})
    assert offsets(batch) == [1, 2, 3, 4, 5]


async def test_a_batch_never_waits_for_more_than_is_buffered() -> None:
    consumer = ScriptedConsumer([3], [4])
    batch = await reader(consumer).read_batch({TP: [record(1)]})
    assert offsets(batch) == [1, 3, 4]
    assert consumer.waits == [0, 0, 0]  # never waits for more: the first empty answer ends it
