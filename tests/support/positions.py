"""Waiting on positions instead of time: a test that must know nothing more will arrive waits
until the reader has reached the end of what was published — a projection's checkpoints, a
consumer group's committed offsets — never for a guessed pause."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from events.topics import Topic
from infra.kafka_address import servers
from infra.kafka_security import client_options
from infra.settings import KafkaSettings
from tests.support.eventually import eventually

CHECKPOINTS = """
SELECT partition, "offset" + 1 AS next FROM projection_checkpoints
WHERE projection = $1 AND topic = $2
"""


def partitions_of(kafka: KafkaSettings, topic: Topic) -> list[TopicPartition]:
    name = topic.full_name(kafka.topic_prefix)
    count = kafka.partitions_for(topic.name.removesuffix(".dlq"), topic.partitions)
    return [TopicPartition(name, p) for p in range(count)]


async def end_offsets(bootstrap: str, kafka: KafkaSettings, topic: Topic) -> dict[int, int]:
    """Each partition's end: the offset the next record published there will get."""
    tps = partitions_of(kafka, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers(bootstrap), enable_auto_commit=False, **client_options(kafka)
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: end for tp, end in ends.items()}


async def projection_caught_up(
    pool: asyncpg.Pool, bootstrap: str, kafka: KafkaSettings, projection: str, topic: Topic,
    *, within: float = 30.0,
) -> None:  # fmt: skip
    """Returns once ``projection`` has applied (or passed over) every record of ``topic``
    published before the call: what its tables show then is all those records will make."""
    ends = await end_offsets(bootstrap, kafka, topic)
    name = topic.full_name(kafka.topic_prefix)
    await projection_reached(pool, projection, name, ends, within=within)


async def projection_reached(
    pool: asyncpg.Pool, projection: str, topic: str, ends: Mapping[int, int],
    *, within: float = 30.0,
) -> None:  # fmt: skip
    """Returns once ``projection``'s checkpoints on ``topic`` (its full name) are at ``ends``
    (partition → the offset after its last record) or past them."""

    async def reached() -> dict[int, int]:
        return {r["partition"]: r["next"] for r in await pool.fetch(CHECKPOINTS, projection, topic)}

    await eventually(
        reached, until=lambda at: all(at.get(p, 0) >= end for p, end in ends.items()),
        within=within, interval=0.1,
    )  # fmt: skip


async def group_caught_up(
    bootstrap: str, kafka: KafkaSettings, group: str, topic: Topic, *, within: float = 30.0
) -> None:
    """Returns once consumer ``group`` has committed every record of ``topic``, those it
    published there itself included: a handler publishes before its offset is committed, so
    once the commits reach the end, that end stays put (nothing more comes from the group)."""
    tps = partitions_of(kafka, topic)

    async def behind() -> int:
        ends = await end_offsets(bootstrap, kafka, topic)
        admin = AIOKafkaAdminClient(bootstrap_servers=servers(bootstrap), **client_options(kafka))
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(
                f"{kafka.topic_prefix}{group}", partitions=tps
            )
        finally:
            await admin.close()
        at = {tp.partition: meta.offset for tp, meta in committed.items() if meta is not None}
        return sum(max(0, end - max(at.get(p, 0), 0)) for p, end in ends.items())

    await eventually(behind, until=lambda n: n == 0, within=within, interval=0.2)
