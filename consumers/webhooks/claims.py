"""``webhook_claims``: the durable outbox and lease of every (message, endpoint) delivery.

States: ``pending`` (an attempt sequence owned by ``owner`` until ``lease_until``),
``scheduled`` (waiting for ``due_at`` on the long schedule; swept at ``lease_until`` = due +
grace if nobody took it), ``delivered`` and ``failed`` (final), ``skipped`` (the endpoint was
disabled: never attempted, kept for the resend that re-enabling it may ask for). Every attempt is counted here
*before* it is made, so attempt numbers (part of the delivery events' ids) never repeat across
restarts, takeovers and resends; every change checks owner and sequence, so a worker that lost
its lease (or whose delivery was resent) stops instead of sending twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

FIRST_SEQUENCE = 0  # webhook_claims.sequence's default; a resend starts the next
# a delivery for a disabled endpoint is kept 'skipped' (no attempt) so re-enabling can send it
CLAIM_NEW = """
INSERT INTO webhook_claims AS w (message_id, endpoint_id, reseller_id, event_type, correlationid,
    body, state, attempts, tries, owner, lease_until, started_at, created_at)
SELECT m, e, r, t, c, b, CASE WHEN s THEN 'skipped' ELSE 'pending' END,
    CASE WHEN s THEN 0 ELSE 1 END, CASE WHEN s THEN 0 ELSE 1 END,
    CASE WHEN s THEN NULL ELSE $8 END, $9, $10, $10
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[])
    AS x(m, e, r, t, c, b, s)
ON CONFLICT (message_id, endpoint_id) DO NOTHING
RETURNING message_id, endpoint_id
"""
RELEASE = """
UPDATE webhook_claims c SET attempts = c.attempts - 1, tries = c.tries - 1, owner = NULL,
    lease_until = $3, updated_at = now()
FROM unnest($1::text[], $2::text[]) AS k(m, e)
WHERE c.message_id = k.m AND c.endpoint_id = k.e AND c.owner = $4 AND c.state = 'pending'
"""
CONTINUE = """
UPDATE webhook_claims SET attempts = attempts + 1, tries = tries + 1, lease_until = $5,
    updated_at = now()
WHERE message_id = $1 AND endpoint_id = $2 AND sequence = $3 AND owner = $4 AND state = 'pending'
RETURNING attempts, tries
"""
TAKE_DUE = """
UPDATE webhook_claims SET state = 'pending', owner = $4, lease_until = $5, attempts = attempts + 1,
    tries = tries + 1, updated_at = now()
WHERE message_id = $1 AND endpoint_id = $2 AND state = 'scheduled' AND attempts = $3 - 1
RETURNING message_id, endpoint_id, reseller_id, event_type, correlationid, body, sequence,
    attempts, tries, started_at
"""
SWEEP = """
UPDATE webhook_claims c SET state = 'pending', owner = $1, lease_until = $2,
    attempts = c.attempts + 1, tries = c.tries + 1, updated_at = now()
FROM (
    SELECT message_id, endpoint_id FROM webhook_claims
    WHERE state IN ('pending', 'scheduled') AND lease_until < $3
      AND NOT (endpoint_id = ANY($4::text[]))
    ORDER BY lease_until LIMIT $5
    FOR UPDATE SKIP LOCKED
) due
WHERE c.message_id = due.message_id AND c.endpoint_id = due.endpoint_id
RETURNING c.message_id, c.endpoint_id, c.reseller_id, c.event_type, c.correlationid, c.body,
    c.sequence, c.attempts, c.tries, c.started_at
"""
EXTEND = """
UPDATE webhook_claims SET lease_until = $5, due_at = $6, updated_at = now()
WHERE message_id = $1 AND endpoint_id = $2 AND sequence = $3 AND owner = $4
"""
SCHEDULE = """
UPDATE webhook_claims SET state = 'scheduled', owner = NULL, due_at = $5, lease_until = $6,
    updated_at = now()
WHERE message_id = $1 AND endpoint_id = $2 AND sequence = $3 AND owner = $4
"""
FINISH = """
UPDATE webhook_claims SET state = $5, owner = NULL, due_at = NULL, updated_at = now(),
    delivered_at = CASE WHEN $5 = 'delivered' THEN $6 ELSE delivered_at END
WHERE message_id = $1 AND endpoint_id = $2 AND sequence = $3 AND owner = $4
RETURNING 1
"""
FINISH_DELIVERED = """
UPDATE webhook_claims c SET state = 'delivered', owner = NULL, due_at = NULL, delivered_at = k.at,
    updated_at = now()
FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[]) AS k(m, e, s, at)
WHERE c.message_id = k.m AND c.endpoint_id = k.e AND c.sequence = k.s AND c.owner = $5
"""
RESEND = """
UPDATE webhook_claims SET state = 'pending', sequence = sequence + 1, attempts = attempts + 1,
    tries = 1, owner = $8, lease_until = $9, started_at = $10, due_at = NULL, resend_ref = $7,
    updated_at = now()
WHERE reseller_id = $1
  AND (cardinality($2::text[]) = 0 OR message_id = ANY($2::text[]))
  AND ($3::text IS NULL OR endpoint_id = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at < $5)
  AND (state IN ('failed', 'skipped') OR (NOT $6 AND state IN ('delivered', 'scheduled')))
  AND resend_ref IS DISTINCT FROM $7
RETURNING message_id, endpoint_id, reseller_id, event_type, correlationid, body, sequence,
    attempts, tries, started_at
"""


@dataclass(frozen=True)
class Job:
    """One delivery about to make attempt ``attempt`` (already counted in its claim row)."""

    message_id: str
    endpoint_id: str
    reseller_id: str
    event_type: str
    correlationid: str
    body: str
    sequence: int
    attempt: int
    tries: int
    started_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return (self.message_id, self.endpoint_id)

    @classmethod
    def from_row(cls, row: Any) -> Job:
        return cls(
            message_id=row["message_id"],
            endpoint_id=row["endpoint_id"],
            reseller_id=row["reseller_id"],
            event_type=row["event_type"],
            correlationid=row["correlationid"],
            body=row["body"],
            sequence=row["sequence"],
            attempt=row["attempts"],
            tries=row["tries"],
            started_at=row["started_at"],
        )


@dataclass(frozen=True)
class NewDelivery:
    message_id: str
    endpoint_id: str
    reseller_id: str
    event_type: str
    correlationid: str
    body: str
    skipped: bool = False  # the endpoint is disabled: kept for a resend, not attempted


class Claims:
    def __init__(self, pool: asyncpg.Pool, owner: str) -> None:
        self._pool = pool
        self.owner = owner

    async def claim_new(
        self, deliveries: Sequence[NewDelivery], now: datetime, lease_until: datetime
    ) -> list[Job]:
        """Inserts the deliveries not seen before; returns those to send (not the skipped)."""
        if not deliveries:
            return []
        columns = [list(col) for col in zip(*(_fields(d) for d in deliveries), strict=True)]
        skipped = [d.skipped for d in deliveries]
        rows = await self._pool.fetch(CLAIM_NEW, *columns, skipped, self.owner, lease_until, now)
        # the rows inserted say which are new; the rest of each job is what was inserted (the
        # body, hundreds of bytes, is not read back from Postgres, nor the values a new claim
        # starts with: decoding them cost more than the INSERT)
        given = {(d.message_id, d.endpoint_id): d for d in deliveries}
        new = (given[r[0], r[1]] for r in rows)
        return [_new_job(d, now) for d in new if not d.skipped]

    async def release(self, jobs: Sequence[Job], now: datetime) -> None:
        if jobs:
            keys = [j.message_id for j in jobs], [j.endpoint_id for j in jobs]
            await self._pool.execute(RELEASE, *keys, now, self.owner)

    async def next_attempt(self, job: Job, lease_until: datetime) -> Job | None:
        row = await self._pool.fetchrow(CONTINUE, *job.key, job.sequence, self.owner, lease_until)
        if row is None:
            return None
        return replace(job, attempt=row["attempts"], tries=row["tries"])

    async def take_due(
        self, message_id: str, endpoint_id: str, attempt: int, lease_until: datetime
    ) -> Job | None:
        """A scheduled retry, if attempt ``attempt`` is still the next one (the attempt count
        only grows, so a stale or duplicate retry event finds nothing)."""
        row = await self._pool.fetchrow(
            TAKE_DUE, message_id, endpoint_id, attempt, self.owner, lease_until
        )
        return None if row is None else Job.from_row(row)

    async def sweep(
        self, now: datetime, lease_until: datetime, full: Sequence[str], limit: int
    ) -> list[Job]:
        rows = await self._pool.fetch(SWEEP, self.owner, lease_until, now, list(full), limit)
        return [Job.from_row(r) for r in rows]

    async def extend(self, job: Job, due_at: datetime, lease_until: datetime) -> None:
        await self._pool.execute(EXTEND, *job.key, job.sequence, self.owner, lease_until, due_at)

    async def schedule(self, job: Job, due_at: datetime, sweep_at: datetime) -> None:
        await self._pool.execute(SCHEDULE, *job.key, job.sequence, self.owner, due_at, sweep_at)

    async def finish(self, job: Job, state: str, at: datetime) -> bool:
        """False when the claim was no longer ours (taken over or resent meanwhile)."""
        done = await self._pool.fetchval(FINISH, *job.key, job.sequence, self.owner, state, at)
        return done is not None

    async def finish_delivered(self, done: Sequence[tuple[Job, datetime]]) -> None:
        """Many deliveries at once (the hot path: one statement per group, not per POST)."""
        await self._pool.execute(
            FINISH_DELIVERED,
            [j.message_id for j, _ in done],
            [j.endpoint_id for j, _ in done],
            [j.sequence for j, _ in done],
            [at for _, at in done],
            self.owner,
        )

    async def resend(
        self,
        reseller_id: str,
        *,
        ref: str,
        message_ids: Sequence[str],
        endpoint_id: str | None,
        since: datetime | None,
        until: datetime | None,
        only_failed: bool,
        now: datetime,
        lease_until: datetime,
    ) -> list[Job]:
        rows = await self._pool.fetch(
            RESEND,
            reseller_id,
            list(message_ids),
            endpoint_id,
            since,
            until,
            only_failed,
            ref,
            self.owner,
            lease_until,
            now,
        )
        return [Job.from_row(r) for r in rows]


def _new_job(d: NewDelivery, now: datetime) -> Job:
    """The job of a claim just inserted pending: first sequence, first attempt, started now."""
    return Job(
        message_id=d.message_id,
        endpoint_id=d.endpoint_id,
        reseller_id=d.reseller_id,
        event_type=d.event_type,
        correlationid=d.correlationid,
        body=d.body,
        sequence=FIRST_SEQUENCE,
        attempt=1,
        tries=1,
        started_at=now,
    )


def _fields(d: NewDelivery) -> tuple[str, ...]:
    return (d.message_id, d.endpoint_id, d.reseller_id, d.event_type, d.correlationid, d.body)
