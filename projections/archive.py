"""Archive: every event on every topic → ``event_log``, once (by event id).

The permanent copy: it outlives Kafka retention and the memory-only development broker, feeds
SIM timelines, ``replay publish`` and ``replay projection --from-archive``.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from events.topics import ALL_TOPICS, Topic
from projections.batches import Record

INSERT_EVENTS = """
INSERT INTO event_log
    (id, topic, partition, "offset", type, key, subject, correlationid, time, payload)
SELECT id, topic, part, off, type, key, subject, corr, time, payload::jsonb
FROM unnest(
    $1::text[], $2::text[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::timestamptz[], $10::text[]
) AS e(id, topic, part, off, type, key, subject, corr, time, payload)
ON CONFLICT (id) DO NOTHING
"""


class ArchiveProjection:
    name = "archive"
    topics: tuple[Topic, ...] = ALL_TOPICS
    tables: tuple[str, ...] = ("event_log",)

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        await conn.execute(
            INSERT_EVENTS,
            [r.event.id for r in records],
            [r.topic for r in records],
            [r.partition for r in records],
            [r.offset for r in records],
            [r.event.type for r in records],
            [r.key.decode(errors="replace") if r.key is not None else None for r in records],
            [r.event.subject for r in records],
            [r.event.correlationid for r in records],
            [r.event.time for r in records],
            [r.value.decode() for r in records],
        )
