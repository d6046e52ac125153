"""Paced commits: handled batches' offsets go out at most once per interval, the last ones once
the subscriber goes quiet, never an offset no handler returned from; a refused commit is
dropped, not raised into the handler."""

import asyncio
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from infra.commit_pacing import CommitPacer

EVERY_S = 0.2


class Consumer:
    def __init__(self, *, refuse: bool = False) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.refuse = refuse

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.refuse:
            raise RuntimeError("rebalance in progress")
        self.commits.append(dict(offsets))


def batch(partition: int, *offsets: int) -> list[ConsumerRecord[Any, Any]]:
    return [ConsumerRecord("t", partition, o, 0, 0, None, b"", None, 0, 0, []) for o in offsets]


def pacer_for(consumer: Consumer) -> CommitPacer:
    return CommitPacer(cast(AIOKafkaConsumer, consumer), EVERY_S)


async def test_batches_within_the_interval_are_committed_together_once_quiet() -> None:
    consumer = Consumer()
    pacer = pacer_for(consumer)
    await pacer.handled(batch(0, 0, 1, 2))
    await pacer.handled(batch(1, 7))
    await pacer.handled(batch(0, 3, 4))
    assert consumer.commits == []  # within the interval: nothing sent yet
    await asyncio.sleep(EVERY_S * 1.5)
    assert consumer.commits == [{TopicPartition("t", 0): 5, TopicPartition("t", 1): 8}]


async def test_a_busy_subscriber_commits_once_per_interval() -> None:
    consumer = Consumer()
    pacer = pacer_for(consumer)
    for offset in range(12):
        await pacer.handled(batch(0, offset))
        await asyncio.sleep(EVERY_S / 4)
    await asyncio.sleep(EVERY_S * 1.5)
    assert 2 <= len(consumer.commits) <= 4
    assert consumer.commits[-1] == {TopicPartition("t", 0): 12}


async def test_a_refused_commit_is_dropped_and_later_batches_still_go_out() -> None:
    consumer = Consumer(refuse=True)
    pacer = pacer_for(consumer)
    await pacer.handled(batch(0, 0))
    await pacer.flush()  # refused: logged, not raised
    consumer.refuse = False
    await pacer.handled(batch(0, 1))
    await pacer.flush()
    assert consumer.commits == [{TopicPartition("t", 0): 2}]


async def test_positions_reached_never_move_a_partition_back() -> None:
    """The projection runner's way in: positions per partition (after a seek back to a lower
    checkpoint, a batch may end below what an earlier one reached)."""
    consumer = Consumer()
    pacer = pacer_for(consumer)
    tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
    await pacer.reached({tp0: 10, tp1: 3})
    await pacer.reached({tp0: 6})
    await pacer.flush()
    assert consumer.commits == [{tp0: 10, tp1: 3}]
