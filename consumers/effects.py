"""The effects ledger (``consumer_effects``): side effects keyed by (consumer, cause event id).

``once`` is how every carrier-calling consumer acts: mark the cause as attempted, act, record a
final outcome, then emit it. A cause seen again — Kafka redelivery, a re-imported sheet, an
outcome re-emitted upstream — finds its outcome and re-emits it (same id: nothing downstream
changes) instead of calling the carrier twice. Recording before emitting means a crash in
between re-emits, never re-acts. A retryable failure is emitted but not recorded, so the next
delivery acts again, told ``retried=True`` so "already done" answers can be read as ours.

A ``Ledger`` is the ledger for causes handled side by side (the provisioning group works on many
SIMs at once): their statements go to Postgres together (``infra.coalescing``), one round trip
for all the causes begun, or recorded, at the same time. Each cause's steps keep their order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from events import codec
from events.envelope import Event
from infra.bus import Bus
from infra.coalescing import Coalesced

Act = Callable[[bool], Awaitable[Event | None]]  # retried → the outcome, None: nothing (yet)

BEGIN = """
INSERT INTO consumer_effects (consumer, event_id) VALUES ($1, $2)
ON CONFLICT (consumer, event_id) DO UPDATE SET attempts = consumer_effects.attempts + 1
RETURNING outcome, attempts
"""
RECORD_OUTCOME = """
INSERT INTO consumer_effects (consumer, event_id, outcome, done_at) VALUES ($1, $2, $3, now())
ON CONFLICT (consumer, event_id) DO UPDATE
SET outcome = EXCLUDED.outcome, done_at = EXCLUDED.done_at
WHERE consumer_effects.outcome IS NULL
"""
BEGIN_MANY = """
INSERT INTO consumer_effects (consumer, event_id)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (consumer, event_id) DO UPDATE SET attempts = consumer_effects.attempts + 1
RETURNING consumer, event_id, outcome, attempts
"""
RECORD_MANY = """
INSERT INTO consumer_effects (consumer, event_id, outcome, done_at)
SELECT c, e, o::jsonb, now() FROM unnest($1::text[], $2::text[], $3::text[]) AS t(c, e, o)
ON CONFLICT (consumer, event_id) DO UPDATE
SET outcome = EXCLUDED.outcome, done_at = EXCLUDED.done_at
WHERE consumer_effects.outcome IS NULL
"""
Item = TypeVar("Item")
Key = tuple[str, str]  # (consumer, cause event id)
Begun = tuple[Any, int]  # the recorded outcome (JSON) or None, deliveries seen


class Ledger:
    """The effects ledger of one pool; ``coalesce``: statements of concurrent causes as one."""

    def __init__(self, pool: asyncpg.Pool, *, coalesce: bool = False) -> None:
        self.pool = pool
        self._begin: Coalesced[Key, Begun] | None = None
        self._record: Coalesced[tuple[str, str, str], None] | None = None
        if coalesce:
            self._begin, self._record = Coalesced(self._begin_many), Coalesced(self._record_many)

    async def begin(self, consumer: str, cause_id: str) -> Begun:
        """Marks the cause attempted; its final outcome if it has one, and the attempts."""
        if self._begin is not None:
            return await self._begin((consumer, cause_id))
        row = await self.pool.fetchrow(BEGIN, consumer, cause_id)
        return row["outcome"], row["attempts"]

    async def record(self, consumer: str, cause_id: str, outcome: Event) -> None:
        """Stores a final outcome; the first one recorded for a cause wins."""
        if self._record is not None:
            await self._record((consumer, cause_id, codec.encode(outcome).decode()))
            return
        await self.pool.execute(RECORD_OUTCOME, consumer, cause_id, outcome.model_dump(mode="json"))

    async def _begin_many(self, keys: Sequence[Key]) -> list[Begun]:
        results: list[Begun] = []
        # a key twice in one statement is refused by Postgres: each round has distinct keys
        for part in rounds(keys):
            consumers, ids = zip(*part, strict=True)
            rows = await self.pool.fetch(BEGIN_MANY, consumers, ids)
            found = {(r["consumer"], r["event_id"]): (r["outcome"], r["attempts"]) for r in rows}
            results += [found[key] for key in part]
        return results  # the rounds keep the keys' order

    async def _record_many(self, items: Sequence[tuple[str, str, str]]) -> list[None]:
        for part in rounds(items, key=lambda item: (item[0], item[1])):
            consumers, ids, outcomes = zip(*part, strict=True)
            await self.pool.execute(RECORD_MANY, consumers, ids, outcomes)
        return [None] * len(items)


def is_final(outcome: Event) -> bool:
    """A failure the carrier may not repeat (``retryable``) is not the last word on its cause."""
    return not getattr(outcome.data, "retryable", False)


async def record(pool: asyncpg.Pool, consumer: str, cause_id: str, outcome: Event) -> None:
    """Stores a final outcome; the first one recorded for a cause wins."""
    await Ledger(pool).record(consumer, cause_id, outcome)


async def once(
    store: asyncpg.Pool | Ledger, bus: Bus, consumer: str, cause: Event, act: Act
) -> Event | None:
    """Runs ``act`` for ``cause`` unless it already has a final outcome; emits the outcome."""
    ledger = store if isinstance(store, Ledger) else Ledger(store)
    recorded, attempts = await ledger.begin(consumer, cause.id)
    if recorded is not None:
        stored = codec.decode(recorded)
        await bus.emit(stored)
        return stored
    outcome = await act(attempts > 1)
    if outcome is None:
        return None
    if is_final(outcome):
        await ledger.record(consumer, cause.id, outcome)
    await bus.emit(outcome)
    return outcome


def rounds(
    items: Sequence[Item], key: Callable[[Item], object] = lambda item: item
) -> list[list[Item]]:
    """``items`` in order, cut where an item's key was already in the current round."""
    out: list[list[Item]] = [[]]
    seen: set[object] = set()
    for item in items:
        if key(item) in seen:
            out.append([])
            seen = set()
        out[-1].append(item)
        seen.add(key(item))
    return out
