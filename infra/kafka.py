"""Kafka plumbing: the FastStream broker built from settings (an idempotent acks=all producer,
records placed as the Java client places them), its subscribers the simfleet way, topic set-up.
Publishing events is ``infra.bus``."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka.partitioner import DefaultPartitioner, murmur2
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.subscriber.usecase import (
    ConcurrentBetweenPartitionsSubscriber,
    DefaultSubscriber,
)
from faststream.message import StreamMessage

from events import codec
from events.envelope import Event
from events.topics import HEADER_TYPE, Topic
from infra.commit_pacing import flush_all, paced_commits
from infra.kafka_address import servers
from infra.kafka_security import broker_security
from infra.kafka_topics import ensure_topics
from infra.metrics import consumer_started
from infra.settings import KafkaSettings

__all__ = [
    "GATHER_BYTES",
    "build_broker",
    "consume",
    "consume_batches",
    "ensure_topics",
]


class ConcurrentStartBroker(KafkaBroker):
    """Starts its subscribers side by side: each consumer group's join waits out the broker's
    rebalance delay (Tansu: half the session timeout, ~5 s), and one after the other that made a
    process with ten groups take ~40 s to be ready."""

    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(sub.start() for sub in self.subscribers))
        for pub in self.publishers:
            await pub.start()
        self.running = True

    async def stop(self, *exc_info: Any) -> None:
        """The batch subscribers' handled offsets committed first (``infra.commit_pacing``)."""
        if self.running:
            await flush_all()
        await super().stop(*exc_info)


def build_broker(
    settings: KafkaSettings,
    bootstrap: str,
    *,
    logger: Any = None,
    middlewares: Sequence[Any] = (),
    client_id: str = "simfleet",
) -> KafkaBroker:
    """``logger``: FastStream's own lines go through ``BrokerLog`` (per-message lines at DEBUG)."""
    return ConcurrentStartBroker(
        servers(bootstrap),
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        linger_ms=settings.kafka_linger_ms,
        max_batch_size=settings.kafka_max_batch_bytes,
        request_timeout_ms=15_000,
        client_id=client_id,
        logger=BrokerLog(logger) if logger is not None else None,
        log_level=logging.DEBUG,  # "Received" / "Processed": two lines per message
        middlewares=middlewares,
        decoder=decode_message,
        partitioner=placed_by_key,
        allow_auto_create_topics=False,
        graceful_timeout=15.0,
        security=broker_security(settings),
    )


KEY_HASHES_KEPT = 65_536
_UNKEYED = DefaultPartitioner()  # stateless: a random available partition


@functools.lru_cache(maxsize=KEY_HASHES_KEPT)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def placed_by_key(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's ``DefaultPartitioner`` (the Java client's murmur2 placement, so other clients
    agree on a key's partition) with each key's hash remembered: aiokafka's murmur2 is pure
    Python, a few µs per record, and a process keeps sending to the same keys (endpoint ids,
    ICCIDs, numbers)."""
    if key is None:
        return int(_UNKEYED(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


# FastStream's start-up chatter per consumer: useful when debugging a group, noise otherwise
_CHATTER = (
    "waiting for messages",
    "assigned to partitions",
    "Auto create topics is disabled",
    "has no partition assignments",
    "partitions revoked",
    "is being executed",  # a consumer task ending, e.g. each one at shutdown
)


class BrokerLog:
    """What FastStream logs, passed on to our logger: its routine per-consumer lines at DEBUG,
    errors and everything else at their own level."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def log(self, level: int, msg: Any, /, *, extra: Any = None, exc_info: Any = None) -> None:
        if level < logging.ERROR and any(part in str(msg) for part in _CHATTER):
            level = logging.DEBUG
        self._logger.log(level, msg, extra=extra, exc_info=exc_info)


async def decode_message(msg: StreamMessage[Any]) -> Event:
    """FastStream decoder: every subscriber receives a typed, validated ``Event``."""
    return codec.decode(msg.body)


def is_type(*classes: type[Event]) -> Callable[[StreamMessage[Any]], Awaitable[bool]]:
    """Subscriber filter on the ``ce_type`` header: unrelated events are skipped unparsed.

    Async on purpose: FastStream runs a sync filter in a worker thread, once per message and
    handler, which made the filter the most expensive step of a busy consumer.
    """
    wanted = frozenset(cls.event_type() for cls in classes)

    async def matches(msg: StreamMessage[Any]) -> bool:
        return msg.headers.get(HEADER_TYPE) in wanted

    return matches


Subscriber = DefaultSubscriber | ConcurrentBetweenPartitionsSubscriber


def consume(
    router: KafkaRouter,
    kafka: KafkaSettings,
    topic: Topic,
    group: str,
    *,
    max_workers: int = 1,
) -> Subscriber:
    """A subscriber the simfleet way: explicit ACK (after the handler; failures go to the DLQ
    middleware), earliest offset for a new group, prefixed names; ``max_workers`` > 1 runs
    partitions concurrently while each partition stays in order."""
    consumer_started(f"{kafka.topic_prefix}{group}")
    return router.subscriber(
        topic.full_name(kafka.topic_prefix),
        group_id=f"{kafka.topic_prefix}{group}",
        ack_policy=AckPolicy.ACK,
        auto_offset_reset="earliest",
        session_timeout_ms=kafka.kafka_session_timeout_ms,
        heartbeat_interval_ms=kafka.kafka_heartbeat_interval_ms,
        max_workers=max_workers,
    )


# A consumer nobody waits on asks the broker to hold its fetch until this much is there (or the
# fetch wait passed): Apache Kafka answers a fetch at its first record, so under a steady trickle
# each batch was a few records, each a Postgres transaction and an offset commit. Tansu holds
# every fetch for its whole wait anyway.
GATHER_BYTES = 256 * 1024


def consume_batches(
    router: KafkaRouter,
    kafka: KafkaSettings,
    topics: Sequence[Topic],
    group: str,
    *,
    wait_ms: int = 50,
    fetch_wait_ms: int = 500,
    gather_bytes: int = 1,
    max_poll_interval_ms: int = 300_000,
) -> Any:
    """A batch subscriber the simfleet way (webhooks, endpoint health, silence, verification
    replies): up to 500 records handed over undecoded — the handler decodes them one by one
    (``infra.dead_letters.decode_wanted``), so one bad record cannot fail the batch — and a batch
    whose handler raised is read again (Postgres or the broker away) rather than committed
    past; the handled ones' offsets are committed at most once a second (``infra.commit_pacing``:
    a handler must be safe to run again on a batch it already handled). ``wait_ms`` bounds how
    long a batch is gathered, ``fetch_wait_ms`` how long one fetch idles on the broker (lower it
    where a waiting record is awaited by someone), ``gather_bytes`` how much the broker waits for
    within that (``GATHER_BYTES`` where nobody waits: a record then waits up to
    ``fetch_wait_ms``)."""
    consumer_started(f"{kafka.topic_prefix}{group}")
    return router.subscriber(
        *(t.full_name(kafka.topic_prefix) for t in topics),
        group_id=f"{kafka.topic_prefix}{group}",
        batch=True,
        max_records=500,
        batch_timeout_ms=wait_ms,
        fetch_max_wait_ms=fetch_wait_ms,
        fetch_min_bytes=gather_bytes,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        session_timeout_ms=kafka.kafka_session_timeout_ms,
        heartbeat_interval_ms=kafka.kafka_heartbeat_interval_ms,
        max_poll_interval_ms=max_poll_interval_ms,
        parser=paced_commits(),
        decoder=_undecoded,
    )


async def _undecoded(_msg: StreamMessage[Any]) -> None:
    return None
