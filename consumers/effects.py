"""The effects ledger (``consumer_effects``): side effects keyed by (consumer, cause event id).

``once`` is how every carrier-calling consumer acts: mark the cause as attempted, act, record a
final outcome, then emit it. A cause seen again — Kafka redelivery, a re-imported sheet, an
outcome re-emitted upstream — finds its outcome and re-emits it (same id: nothing downstream
changes) instead of calling the carrier twice. Recording before emitting means a crash in
between re-emits, never re-acts. A retryable failure is emitted but not recorded, so the next
delivery acts again, told ``retried=True`` so "already done" answers can be read as ours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from events import codec
from events.envelope import Event
from infra.kafka import Bus

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


def is_final(outcome: Event) -> bool:
    """A failure the carrier may not repeat (``retryable``) is not the last word on its cause."""
    return not getattr(outcome.data, "retryable", False)


async def record(pool: asyncpg.Pool, consumer: str, cause_id: str, outcome: Event) -> None:
    """Stores a final outcome; the first one recorded for a cause wins."""
    await pool.execute(RECORD_OUTCOME, consumer, cause_id, outcome.model_dump(mode="json"))


async def once(pool: asyncpg.Pool, bus: Bus, consumer: str, cause: Event, act: Act) -> Event | None:
    """Runs ``act`` for ``cause`` unless it already has a final outcome; emits the outcome."""
    row = await pool.fetchrow(BEGIN, consumer, cause.id)
    if row["outcome"] is not None:
        stored = codec.decode(row["outcome"])
        await bus.emit(stored)
        return stored
    outcome = await act(row["attempts"] > 1)
    if outcome is None:
        return None
    if is_final(outcome):
        await record(pool, consumer, cause.id, outcome)
    await bus.emit(outcome)
    return outcome
