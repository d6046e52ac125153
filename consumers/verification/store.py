"""The verification flow's state (``verifications``, ``verification_replies``; migration 0040).

Written by ``consumers/verification/consumer.py`` (codes, pending verifications, replies, matches) and by
``producers/scheduler.py`` (timeouts); read by the webhook flow through ``is_verification_sms``.

A reply and its ``verification.sent`` travel on different topics, so either may be consumed
first: each side records itself and then looks for the other, under a transaction-scoped
advisory lock on the code, so the two can never both miss each other. The outcome is emitted
*inside* the transaction that marks the row: a crash before the commit leaves the row as it
was and the redelivered message emits the same event id again (harmless); a commit without the
emit cannot happen. Only rows in state ``sent`` can be decided, and deciding moves them out of
it under a row lock: one verification gets exactly one of online / failed. A reply is judged by
``received_at`` (the gateway's time), never by when it was consumed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from consumers.verification.guards import answered, count_unanswered
from consumers.verification.rules import code_in
from events.envelope import Event
from events.sim import VerificationSent
from events.sms import SmsReceived
from infra.bus import Bus

PRODUCER = "simfleet/verification"
CODE_LOCK = 0x5E1F  # advisory lock namespace: (CODE_LOCK, hashtext(code))
# a reply the gateway stamped this long before our send still counts (the gateway's clock and
# ours differ; a code is random, so an old reply cannot match by chance)
REPLY_SKEW = timedelta(minutes=10)

RESERVE = """
INSERT INTO verifications (request_id, iccid, number, code, state, correlationid,
                           mobility_subscription_id, assigned_at, created_at, updated_at,
                           attempt, avoid_senders, avoid_gateways, started_at)
VALUES ($1, $2, $3, $4, 'sending', $5, $6, $7, $8, $8, $9, $10, $11, $12)
ON CONFLICT (request_id) DO UPDATE SET updated_at = EXCLUDED.updated_at,
    state = CASE WHEN verifications.state = 'deferred' THEN 'sending' ELSE verifications.state END
RETURNING code
"""
# a newer verification of the SIM (a rotated number, an operator's retry) replaces the ones
# begun before $4; a replayed older verification.sent must not replace a newer one
SUPERSEDE = """
UPDATE verifications SET state = 'superseded', updated_at = $3
WHERE iccid = $1 AND request_id <> $2 AND state IN ('sending', 'sent', 'deferred')
  AND created_at < $4
"""
MARK_SKIPPED = """
UPDATE verifications SET state = 'skipped', awaiting_sender = $3, updated_at = $2
WHERE request_id = $1
"""
LOCK_CODE = "SELECT pg_advisory_xact_lock($1, hashtext($2))"
RECORD_SENT = """
INSERT INTO verifications (request_id, iccid, number, code, state, correlationid, sender_iccid,
                           sender_port, sent_event_id, sent_at, expires_at, assigned_at,
                           created_at, updated_at, sender_gateway, started_at)
SELECT $1, $2, $3, $4,
       CASE WHEN EXISTS (SELECT 1 FROM verifications o
                         WHERE o.iccid = $2 AND o.request_id <> $1 AND o.created_at > $9)
            THEN 'superseded' ELSE 'sent' END,
       $5, $6, $7, $8, $9, $10, $9, $11, $11, $12, $9
ON CONFLICT (request_id) DO UPDATE
SET state = 'sent', code = EXCLUDED.code, sender_iccid = EXCLUDED.sender_iccid,
    sender_gateway = EXCLUDED.sender_gateway,
    sender_port = EXCLUDED.sender_port, sent_event_id = EXCLUDED.sent_event_id,
    sent_at = EXCLUDED.sent_at, expires_at = EXCLUDED.expires_at, updated_at = EXCLUDED.updated_at,
    started_at = coalesce(verifications.started_at, EXCLUDED.sent_at)
WHERE verifications.state = 'sending'
"""
PENDING_BY_REQUEST = """
SELECT * FROM verifications WHERE request_id = $1 AND state = 'sent' FOR UPDATE
"""
# judged by when the gateway received the reply ($4), not by when it was consumed: a consumer
# behind its topic never fails a number that answered in time
PENDING_BY_CODE = """
SELECT * FROM verifications
WHERE code = $1 AND state = 'sent' AND (number = $2 OR iccid = $3) AND $4 <= expires_at
ORDER BY sent_at DESC LIMIT 1 FOR UPDATE
"""
# the receiving SIM: as the gateway said, else the SIM last reported in that port
RECORD_REPLY = """
INSERT INTO verification_replies (message_id, code, number, iccid, gateway_id, port,
                                  received_at, recorded_at)
VALUES ($1, $2, $3, coalesce($4, (SELECT iccid FROM gateway_ports
                                  WHERE gateway_id = $5 AND port = $6)), $5, $6, $7, $8)
ON CONFLICT (message_id) DO NOTHING
"""
UNMATCHED_REPLY = """
SELECT * FROM verification_replies WHERE message_id = $1 AND matched_request_id IS NULL
FOR UPDATE
"""
REPLY_FOR = """
SELECT message_id FROM verification_replies
WHERE code = $1 AND matched_request_id IS NULL AND (number = $2 OR iccid = $3)
  AND received_at BETWEEN $4 AND $5
ORDER BY received_at LIMIT 1 FOR UPDATE
"""
MARK_ONLINE = """
WITH reply AS (
    UPDATE verification_replies SET matched_request_id = $1 WHERE message_id = $2
)
UPDATE verifications SET state = 'online', reply_message_id = $2, verified_at = $3,
    online_until = $4, updated_at = $3
WHERE request_id = $1
"""
CLAIM_EXPIRED = """
SELECT * FROM verifications WHERE state = 'sent' AND expires_at < $1
ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
"""
MARK_FAILED = """
UPDATE verifications SET state = 'failed', failed_at = $2, updated_at = $2
WHERE request_id = ANY($1::text[])
"""
# the webhook flow's question, for a batch of SMS: which carry one of our codes for their SIM
OURS = """
SELECT s.message_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
     AS s(message_id, code, number, iccid, gateway_id, port)
WHERE EXISTS (
    SELECT 1 FROM verifications v
    WHERE v.code = s.code
      AND (v.number = s.number OR v.iccid = s.iccid
           OR v.iccid = (SELECT gp.iccid FROM gateway_ports gp
                         WHERE gp.gateway_id = s.gateway_id AND gp.port = s.port)))
"""


@dataclass(frozen=True)
class Pending:
    """A verification waiting for its reply, as an outcome needs it."""

    request_id: str
    iccid: str
    number: str
    sent_event_id: str
    correlationid: str
    mobility_subscription_id: str | None
    assigned_at: datetime | None
    sender_iccid: str | None = None
    sender_gateway: str | None = None
    attempt: int = 1
    avoid_senders: tuple[str, ...] = ()
    avoid_gateways: tuple[str, ...] = ()
    sent_at: datetime | None = None
    started_at: datetime | None = None  # the number's first verification SMS

    @classmethod
    def of(cls, row: asyncpg.Record) -> Pending:
        fields = {k: row[k] for k in cls.__dataclass_fields__}
        fields["avoid_senders"] = tuple(fields["avoid_senders"] or ())
        fields["avoid_gateways"] = tuple(fields["avoid_gateways"] or ())
        return cls(**fields)


Outcome = Callable[[Pending], tuple[Event, datetime | None]]  # the event and its online_until


@dataclass(frozen=True)
class Target:
    """The number a request verifies, and what its outcome will carry."""

    number: str
    subscription_id: str | None
    assigned_at: datetime | None  # when the SIM got the number: its online_until follows
    attempt: int = 1  # 2: the automatic retry after a timeout
    avoid_senders: tuple[str, ...] = ()  # the earlier attempts' senders and gateways
    avoid_gateways: tuple[str, ...] = ()
    started_at: datetime | None = None  # the first attempt's send (retries: their budget)


async def reserve_code(
    pool: asyncpg.Pool, request: Event, target: Target, code: str, now: datetime
) -> str:
    """The request's code: ``code`` the first time, the stored one on every later attempt."""
    iccid = request.subject  # sim.lifecycle events are keyed by ICCID
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(SUPERSEDE, iccid, request.id, now, now)
        reserved: str = await conn.fetchval(
            RESERVE, request.id, iccid, target.number, code, request.correlationid,
            target.subscription_id, target.assigned_at, now, target.attempt,
            list(target.avoid_senders), list(target.avoid_gateways), target.started_at,
        )  # fmt: skip
    return reserved


async def mark_skipped(
    pool: asyncpg.Pool, request_id: str, now: datetime, *, awaiting_sender: bool
) -> None:
    """``awaiting_sender``: skipped for want of a sender, asked again once there is one
    (``consumers/verification/waiting.py``)."""
    await pool.execute(MARK_SKIPPED, request_id, now, awaiting_sender)


async def record_sent(
    pool: asyncpg.Pool, bus: Bus, sent: VerificationSent, now: datetime, outcome: Outcome
) -> Event | None:
    """The verification is pending from now on; if its reply came first, it is decided here."""
    d = sent.data
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(LOCK_CODE, CODE_LOCK, d.code)
        await conn.execute(SUPERSEDE, d.iccid, d.request_id, now, d.sent_at)
        await conn.execute(
            RECORD_SENT, d.request_id, d.iccid, d.number, d.code, sent.correlationid,
            d.sender_iccid, d.sender_port, sent.id, d.sent_at, d.expires_at, now,
            d.sender_gateway,
        )  # fmt: skip
        row = await conn.fetchrow(PENDING_BY_REQUEST, d.request_id)
        if row is None:
            return None  # decided, skipped or superseded already
        reply = await conn.fetchval(
            REPLY_FOR, d.code, d.number, d.iccid, d.sent_at - REPLY_SKEW, d.expires_at
        )
        if reply is None:
            return None
        return await _decide(conn, bus, Pending.of(row), reply, now=now, outcome=outcome)


async def record_reply(
    pool: asyncpg.Pool, bus: Bus, sms: SmsReceived, code: str, *, now: datetime, outcome: Outcome
) -> Event | None:
    """The reply is kept (matched or not); if its verification is pending, it is decided here."""
    d = sms.data
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(LOCK_CODE, CODE_LOCK, code)
        await conn.execute(
            RECORD_REPLY, sms.id, code, d.to, d.iccid, d.gateway_id, d.port, d.received_at, now
        )
        reply = await conn.fetchrow(UNMATCHED_REPLY, sms.id)
        if reply is None:
            return None  # this SMS was matched before (a redelivery)
        row = await conn.fetchrow(
            PENDING_BY_CODE, code, reply["number"], reply["iccid"], d.received_at
        )
        if row is None:
            return None  # before its verification.sent (kept for it) or too late (kept only)
        return await _decide(conn, bus, Pending.of(row), sms.id, now=now, outcome=outcome)


async def _decide(
    conn: asyncpg.Connection, bus: Bus, pending: Pending, reply_id: str, *, now: datetime,
    outcome: Outcome,
) -> Event:  # fmt: skip
    event, online_until = outcome(pending)
    cleared = None
    if pending.sender_iccid is not None:
        cleared = await answered(conn, pending.sender_iccid, pending.sent_event_id, now, PRODUCER)
    await bus.emit_many([event, *([cleared] if cleared else [])])  # inside the transaction
    await conn.execute(MARK_ONLINE, pending.request_id, reply_id, now, online_until)
    return event


async def expire_due(
    pool: asyncpg.Pool, bus: Bus, now: datetime, outcome: Outcome, *, suspect_after: int,
    producer: str, batch: int = 500, expired_before: datetime | None = None,
) -> list[Event]:  # fmt: skip
    """Ends every verification that expired before ``expired_before`` (default: now), each
    once: the rows are claimed with SKIP LOCKED (a second sweeper takes other rows or none) and
    leave ``sent`` as their outcome (a retry or the failure) is emitted; each counts against its
    sender (suspects announced)."""
    failed: list[Event] = []
    cutoff = now if expired_before is None else expired_before
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(CLAIM_EXPIRED, cutoff, batch)
            pending = [Pending.of(r) for r in rows]
            events = [outcome(p)[0] for p in pending]
            timed_out = [(p.sender_iccid, p.sent_event_id) for p in pending if p.sender_iccid]
            events += await count_unanswered(conn, timed_out, now, suspect_after, producer)
            await bus.emit_many(events)
            await conn.execute(MARK_FAILED, [r["request_id"] for r in rows], now)
        failed += events
        if len(rows) < batch:
            return failed


async def verification_sms_ids(pool: asyncpg.Pool, batch: Sequence[SmsReceived]) -> set[str]:
    """The ids of the SMS in ``batch`` that are our own verification codes arriving (one query;
    SMS that do not read ``VERIFY <code>`` cost nothing)."""
    coded = [(sms, code) for sms in batch if (code := code_in(sms.data.body)) is not None]
    if not coded:
        return set()
    rows = await pool.fetch(
        OURS,
        [s.id for s, _ in coded],
        [c for _, c in coded],
        [s.data.to for s, _ in coded],
        [s.data.iccid for s, _ in coded],
        [s.data.gateway_id for s, _ in coded],
        [s.data.port for s, _ in coded],
    )
    return {r["message_id"] for r in rows}


async def is_verification_sms(pool: asyncpg.Pool, event: SmsReceived) -> bool:
    """True if this SMS is one of our verification codes reaching the SIM being verified: the
    webhook flow must not forward it to the reseller as ``sms.received``."""
    return event.id in await verification_sms_ids(pool, [event])
