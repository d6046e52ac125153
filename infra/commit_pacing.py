"""Batch subscribers' offsets committed at most once a second, not once a batch (the projection
runner's too: ``CommitPacer.reached``).

Every handled batch was an OffsetCommit request (a write to ``__consumer_offsets``): ~50 a second
from the webhook consumer alone at 900 SMS/s, ~100 from the workers on Tansu, each costing the
broker about a millisecond of CPU. A batch subscriber's handler is safe to run again on a batch
(claims, conditional updates: every one says how), so its offsets may trail by a second: the
offsets of handled batches are remembered per partition and committed when a second has passed
since the last commit, a second after the last batch when it goes quiet, and when the broker
stops. A commit a rebalance refused is dropped: the partition's new owner reads that second again.

Only offsets of batches whose handler returned are ever committed (never the position of a batch
still being handled); a batch whose handler raised is read again as before (FastStream's nack
seeks back to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faststream.message import StreamMessage

from infra.batch_messages import Parse, Records, batch_message

COMMIT_EVERY_S = 1.0

log = structlog.get_logger("simfleet.kafka")


class CommitPacer:
    """One per consumer: the offsets its handled batches reached, and when they go out."""

    def __init__(self, consumer: AIOKafkaConsumer, every_s: float) -> None:
        self._consumer = consumer
        self._every_s = every_s
        self._handled: dict[TopicPartition, int] = {}
        self._last = time.monotonic()
        self._later: asyncio.Task[None] | None = None

    async def handled(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        # a partition's records come in order: its last is where it reached (keyed by a plain
        # tuple per record, a TopicPartition per partition)
        last = {(r.topic, r.partition): r.offset for r in records}
        await self.reached({TopicPartition(*tp): offset + 1 for tp, offset in last.items()})

    async def reached(self, positions: Mapping[TopicPartition, int]) -> None:
        """Handled up to these positions (each partition's next offset to read)."""
        for tp, offset in positions.items():
            if offset > self._handled.get(tp, 0):
                self._handled[tp] = offset
        if time.monotonic() - self._last >= self._every_s:
            await self.flush()
        elif self._later is None:
            self._later = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self._every_s)
        finally:
            self._later = None
        await self.flush()

    async def flush(self) -> None:
        offsets, self._handled = self._handled, {}
        self._last = time.monotonic()
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception as err:  # a rebalance or a stop took the partitions: read again there
            log.debug("kafka_commit_dropped", error=repr(err), partitions=len(offsets))

    def close(self) -> None:
        if self._later is not None:
            self._later.cancel()


_PACERS: weakref.WeakKeyDictionary[AIOKafkaConsumer, CommitPacer] = weakref.WeakKeyDictionary()


class _Committing:
    """The consumer a batch message holds: FastStream's ack (``consumer.commit()``) hands the
    batch to the pacer; everything else (its nack's ``seek``) goes to the consumer itself."""

    def __init__(self, consumer: AIOKafkaConsumer, pacer: CommitPacer, records: Records) -> None:
        self._consumer, self._pacer, self._records = consumer, pacer, records

    async def commit(self) -> None:
        await self._pacer.handled(self._records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def paced_commits(every_s: float = COMMIT_EVERY_S) -> Callable[[Records, Parse], Any]:
    """A batch subscriber's ``parser``: FastStream's own (``infra.batch_messages``'s leaner
    make of it), with the ack's commit paced."""

    async def parse(records: Records, original: Parse) -> StreamMessage[Any]:
        message = await batch_message(records, original)
        consumer = message.consumer  # type: ignore[attr-defined]
        if isinstance(consumer, AIOKafkaConsumer):
            pacer = _PACERS.get(consumer)
            if pacer is None:
                pacer = _PACERS[consumer] = CommitPacer(consumer, every_s)
            message.consumer = _Committing(consumer, pacer, records)  # type: ignore[attr-defined]
        return message

    return parse


async def flush_all(timeout_s: float = 2.0) -> None:
    """Every pacer's handled offsets committed now (a broker stopping), bounded: a broker gone
    must not hold the stop."""
    pacers = list(_PACERS.values())
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(pacer.flush() for pacer in pacers))
    for pacer in pacers:
        pacer.close()
