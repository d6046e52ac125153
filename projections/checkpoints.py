"""A projection's position: per topic and partition, the last offset its tables hold.

``projection_checkpoints`` is written in the transaction that writes the rows, so the tables
and their position never disagree; Kafka's committed offsets only follow it.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg
from aiokafka import TopicPartition

Positions = dict[tuple[str, int], int]  # (topic, partition) → the last offset applied

SELECT_CHECKPOINTS = """
SELECT topic, partition, "offset" FROM projection_checkpoints WHERE projection = $1
"""
# only the partitions of the batch: projectors sharing a group each hold their own partitions,
# and must not wait for each other's transactions
LOCK_CHECKPOINTS = """
SELECT topic, partition, "offset" FROM projection_checkpoints
WHERE projection = $1 AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))
FOR UPDATE
"""
UPSERT_CHECKPOINTS = """
INSERT INTO projection_checkpoints (projection, topic, partition, "offset")
SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS c(t, p, o)
ON CONFLICT (projection, topic, partition) DO UPDATE
SET "offset" = GREATEST(projection_checkpoints."offset", EXCLUDED."offset"), updated_at = now()
"""


def positions_of(rows: Iterable[asyncpg.Record]) -> Positions:
    return {(r["topic"], r["partition"]): r["offset"] for r in rows}


async def positions(conn: asyncpg.Connection, projection: str) -> Positions:
    return positions_of(await conn.fetch(SELECT_CHECKPOINTS, projection))


async def lock(
    conn: asyncpg.Connection, projection: str, partitions: Iterable[TopicPartition]
) -> Positions:
    """The positions of ``partitions``, their rows locked until the transaction ends."""
    tps = list(partitions)
    rows = await conn.fetch(
        LOCK_CHECKPOINTS, projection, [tp.topic for tp in tps], [tp.partition for tp in tps]
    )
    return positions_of(rows)


async def advance(conn: asyncpg.Connection, projection: str, last: Positions) -> None:
    """Each partition's checkpoint moves on to its offset in ``last``, never back."""
    await conn.execute(
        UPSERT_CHECKPOINTS,
        projection,
        [t for t, _ in last],
        [p for _, p in last],
        list(last.values()),
    )
