"""Guards on verification SMS (migration 0061), so a rotation of the whole fleet never floods one
sender or one number, and a sender whose SMS vanish stops being chosen.

- Rate limits (``verification_sends``): a send takes a slot only while the number has had fewer
  than ``VERIFICATION_NUMBER_PER_HOUR`` verification SMS in the last hour and the sender has
  sent fewer than ``VERIFICATION_SENDER_PER_MINUTE`` in the last minute. Slots are taken under
  transaction-scoped advisory locks on the number, then the sender (one order for every taker:
  no deadlock), so concurrent workers and processes never exceed a limit. A verification no
  sender has room for is deferred, not dropped: ``mark_deferred`` keeps it with the time a slot
  frees, and the scheduler asks again then (``resume_deferred`` → verification.requested).
- Suspect senders (``verification_senders``): each timed-out verification counts against its
  sender; ``VERIFICATION_SUSPECT_AFTER`` in a row → verification.sender_suspect (emitted in the
  expiry's transaction, once: the row remembers it). An answered verification resets the count
  and, for a suspect, emits verification.sender_cleared. Suspects are chosen last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from consumers.verification.rules import becomes_suspect, next_free_at
from events.envelope import Event
from events.sim import VerificationRequested, VerificationSenderCleared, VerificationSenderSuspect
from infra.bus import Bus
from infra.settings import VerificationSettings

# advisory lock namespaces, one per kind, so a number's and a sender's hashes never collide
# (a collision would let two takers lock in opposite orders: a deadlock)
NUMBER_LOCK, SENDER_LOCK = 0x5E2D, 0x5E2E
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)
LOCK = "SELECT pg_advisory_xact_lock($1, hashtext($2))"
OWN_SLOT = "SELECT 1 FROM verification_sends WHERE request_id = $1 AND sender_iccid = $2"
TO_NUMBER = "SELECT sent_at FROM verification_sends WHERE number = $1 AND sent_at > $2"
FROM_SENDER = "SELECT sent_at FROM verification_sends WHERE sender_iccid = $1 AND sent_at > $2"
TAKE = """
INSERT INTO verification_sends (request_id, sender_iccid, number, sent_at)
VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING
"""
RELEASE = "DELETE FROM verification_sends WHERE request_id = $1 AND sender_iccid = $2"
MARK_DEFERRED = """
UPDATE verifications SET state = 'deferred', deferred_until = $2, updated_at = $3
WHERE request_id = $1 AND state = 'sending'
"""
CLAIM_DEFERRED = """
SELECT * FROM verifications WHERE state = 'deferred' AND deferred_until <= $1
ORDER BY deferred_until LIMIT $2 FOR UPDATE SKIP LOCKED
"""
MARK_ASKED_AGAIN = """
UPDATE verifications SET state = 'superseded', updated_at = $2 WHERE request_id = ANY($1::text[])
"""
UNANSWERED = """
INSERT INTO verification_senders (iccid, unanswered, updated_at)
SELECT i, n, $3 FROM unnest($1::text[], $2::int[]) AS x(i, n)
ON CONFLICT (iccid) DO UPDATE
SET unanswered = verification_senders.unanswered + EXCLUDED.unanswered,
    updated_at = EXCLUDED.updated_at
RETURNING iccid, unanswered, suspect_since IS NOT NULL AS suspect
"""
MARK_SUSPECT = """
UPDATE verification_senders SET suspect_since = $2, suspect_event_id = $3 WHERE iccid = $1
"""
# the CTE reads the row as it was (locked): its suspect event, if any, is what this answer ends
ANSWERED = """
WITH old AS (
    SELECT iccid, suspect_event_id FROM verification_senders WHERE iccid = $1 FOR UPDATE
)
UPDATE verification_senders v
SET unanswered = 0, suspect_since = NULL, suspect_event_id = NULL, updated_at = $2
FROM old WHERE v.iccid = old.iccid
RETURNING old.suspect_event_id
"""


@dataclass(frozen=True)
class Refused:
    """No slot now: free again ``until``; ``by`` the number's limit (no sender helps) or the
    sender's (another sender may)."""

    until: datetime
    by: Literal["number", "sender"]


async def take_slot(
    pool: asyncpg.Pool, request_id: str, sender: str, number: str, *, now: datetime,
    limits: VerificationSettings,
) -> Refused | None:  # fmt: skip
    """A send slot for (request, sender) — None when taken (or already this request's)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(LOCK, NUMBER_LOCK, number)
        await conn.execute(LOCK, SENDER_LOCK, sender)
        if await conn.fetchval(OWN_SLOT, request_id, sender):
            return None  # a redelivered request: the gateway recognises its task id
        to_number = [r[0] for r in await conn.fetch(TO_NUMBER, number, now - HOUR)]
        until = next_free_at(to_number, limits.number_per_hour, HOUR, now)
        if until is not None:
            return Refused(until, "number")
        from_sender = [r[0] for r in await conn.fetch(FROM_SENDER, sender, now - MINUTE)]
        until = next_free_at(from_sender, limits.sender_per_minute, MINUTE, now)
        if until is not None:
            return Refused(until, "sender")
        await conn.execute(TAKE, request_id, sender, number, now)
    return None


async def release_slot(pool: asyncpg.Pool, request_id: str, sender: str) -> None:
    """The gateway refused the task: no SMS left, so it does not count."""
    await pool.execute(RELEASE, request_id, sender)


async def mark_deferred(
    pool: asyncpg.Pool, request_id: str, until: datetime, now: datetime
) -> None:
    await pool.execute(MARK_DEFERRED, request_id, until, now)


async def resume_deferred(
    pool: asyncpg.Pool, bus: Bus, now: datetime, producer: str, *, batch: int = 500
) -> list[VerificationRequested]:
    """Deferred verifications whose time has come → verification.requested each (same number,
    attempt and avoid lists), claimed with SKIP LOCKED and superseded in the emitting
    transaction: one request per deferral, whatever the number of schedulers."""
    return await ask_again_claimed(
        pool, bus, now, producer, claim=CLAIM_DEFERRED, args=(now,), batch=batch,
        ref="deferred", reason="rate limit",
    )  # fmt: skip


async def ask_again_claimed(
    pool: asyncpg.Pool, bus: Bus, now: datetime, producer: str, *, claim: str,
    args: tuple[object, ...], batch: int, ref: str, reason: str,
) -> list[VerificationRequested]:  # fmt: skip
    """Verifications the ``claim`` query takes (its arguments: ``args`` then ``batch``) asked
    for again, each superseded in the transaction that emits its request, batch by batch."""
    asked: list[VerificationRequested] = []
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(claim, *args, batch)
            events = [ask_again(r, now, producer, ref=ref, reason=reason) for r in rows]
            await bus.emit_many(events)
            await conn.execute(MARK_ASKED_AGAIN, [r["request_id"] for r in rows], now)
        asked += events
        if len(rows) < batch:
            return asked


def ask_again(
    row: asyncpg.Record, now: datetime, producer: str, *, ref: str, reason: str
) -> VerificationRequested:
    return VerificationRequested.create(
        producer=producer, time=now, correlationid=row["correlationid"], iccid=row["iccid"],
        ref=f"{ref}:{row['request_id']}", number=row["number"], attempt=row["attempt"],
        avoid_senders=tuple(row["avoid_senders"]), avoid_gateways=tuple(row["avoid_gateways"]),
        started_at=row["started_at"], reason=reason,
    )  # fmt: skip


async def count_unanswered(
    conn: asyncpg.Connection, timed_out: Sequence[tuple[str, str]], now: datetime,
    threshold: int, producer: str,
) -> list[Event]:  # fmt: skip
    """Counts each (sender, verification.sent id) that timed out, in expiry order, against its
    sender; the senders reaching ``threshold`` now → verification.sender_suspect."""
    last: dict[str, str] = {}
    counts: dict[str, int] = {}
    for sender, sent_id in timed_out:
        last[sender], counts[sender] = sent_id, counts.get(sender, 0) + 1
    senders = sorted(counts)  # one lock order for every sweeper
    rows = await conn.fetch(UNANSWERED, senders, [counts[s] for s in senders], now)
    suspects: list[Event] = []
    for row in rows:
        if becomes_suspect(row["unanswered"], already=row["suspect"], threshold=threshold):
            event = VerificationSenderSuspect.create(
                producer=producer, time=now, iccid=row["iccid"], unanswered=row["unanswered"],
                request_id=last[row["iccid"]],
            )  # fmt: skip
            await conn.execute(MARK_SUSPECT, row["iccid"], now, event.id)
            suspects.append(event)
    return suspects


async def answered(
    conn: asyncpg.Connection, sender: str, sent_id: str, now: datetime, producer: str
) -> VerificationSenderCleared | None:
    """The sender's SMS was answered: its count starts again; a suspect is cleared."""
    suspect_event_id = await conn.fetchval(ANSWERED, sender, now)
    if suspect_event_id is None:
        return None
    return VerificationSenderCleared.create(
        producer=producer, time=now, iccid=sender, suspect_event_id=suspect_event_id,
        request_id=sent_id,
    )  # fmt: skip
