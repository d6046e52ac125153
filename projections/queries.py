"""Fleet read queries for the dashboard and CLI (cosmicpython ``views.py``): SQL → frozen models.

Reads ``sims``, ``sim_numbers``, ``inbound_sms``, ``gateway_ports``, ``event_log``,
``webhook_deliveries`` and ``projection_checkpoints``; owns no table. The logs (SMS, deliveries,
Helix calls, resellers) are in ``projections.log_queries``.

Scale notes (100,000 SIMs): the SIM table is keyset-paginated on ``iccid`` (never OFFSET) and
counts SMS only for the page's rows, capped. An SMS belongs to the SIM ``inbound_sms_resolved``
names, but that view cannot be filtered by SIM through an index; per-SIM reads restate its rule
as three indexed paths (see ``SIM_SMS_COUNTS``), and a test holds the two to the same answer.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict

from events.topics import SIM_LIFECYCLE
from infra.redaction import redact

PAGE_SIZE = 50
SMS_COUNT_CAP = 1000  # per SIM on the SIM table; the SIM's page lists its SMS
SIM_STATUSES = ("pending", "provisioning", "active", "suspended", "canceled", "error")
SimStatus = Literal["pending", "provisioning", "active", "suspended", "canceled", "error"]
RunAction = Literal["activate", "finalize", "rotate", "sync"]


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class StatusCount(View):
    status: str
    sims: int


class ProjectionPosition(View):
    """How far a projection has read a topic; Kafka end offsets are not compared (see README)."""

    projection: str
    topic: str
    partitions: int
    applied: int
    updated_at: datetime


class Overview(View):
    as_of: datetime
    total_sims: int
    by_status: tuple[StatusCount, ...]
    online: int
    verification_failed: int
    silent: int
    sms_24h: int
    delivered_24h: int
    failed_24h: int
    waiting_24h: int
    webhook_success_rate: float | None
    projections: tuple[ProjectionPosition, ...]


class SimRow(View):
    iccid: str
    current_number: str | None
    status: str
    number_status: str | None
    reseller_id: str | None
    mobility_subscription_id: str | None
    last_rotated_at: datetime | None
    rotation_count: int
    sms_count: int
    inbound_silent_since: datetime | None = None


class SimPage(View):
    rows: tuple[SimRow, ...]
    matched: int
    next_after: str | None
    prev_before: str | None


class Sim(View):
    iccid: str
    imei: str | None
    status: str
    mobility_subscription_id: str | None
    current_number: str | None
    number_status: str | None
    reseller_id: str | None
    gateway_id: str | None
    port: str | None
    activated_at: datetime | None
    last_error: str | None
    rotation_status: str
    last_rotated_at: datetime | None
    next_rotation_due_at: datetime | None
    rotation_count: int
    rotation_last_error: str | None
    updated_at: datetime
    inbound_silent_since: datetime | None = None
    verification_suspect_since: datetime | None = None


class NumberRow(View):
    e164: str
    source: str
    valid_from: datetime
    valid_to: datetime | None
    verification_status: str
    verification_code: str | None
    sender_iccid: str | None
    sent_at: datetime | None
    verified_at: datetime | None
    failed_at: datetime | None


class TimelineEntry(View):
    id: str
    time: datetime
    type: str
    source: str
    subject: str
    correlationid: str
    actor: str | None = None  # who asked, on requests (``requested_by``)
    details: tuple[tuple[str, str], ...]


class SmsRow(View):
    id: int
    message_id: str
    received_at: datetime
    gateway_id: str
    port: str | None
    sender: str
    to_number: str | None
    sim_iccid: str | None
    unknown_sim: bool
    body: str


class SimDetail(View):
    sim: Sim
    numbers: tuple[NumberRow, ...]
    timeline: tuple[TimelineEntry, ...]
    sms: tuple[SmsRow, ...]


class SubscriptionRef(View):
    iccid: str
    mobility_subscription_id: str | None


class SimTarget(View):
    """What a command needs to know about a SIM to decide whether (and how) to request."""

    iccid: str
    status: str
    imei: str | None
    current_number: str | None
    mobility_subscription_id: str | None
    reseller_id: str | None
    gateway_id: str | None
    port: str | None


SIM_COUNTS = """
SELECT status, count(*) AS sims,
       count(*) FILTER (WHERE status = 'active' AND number_status = 'verified') AS online,
       count(*) FILTER (WHERE status = 'active' AND number_status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'active' AND inbound_silent_since IS NOT NULL) AS silent
FROM sims GROUP BY status
"""
SILENT_SIMS = """
SELECT count(*) FROM sims WHERE status = 'active' AND inbound_silent_since IS NOT NULL
"""
SMS_SINCE = "SELECT count(*) FROM inbound_sms WHERE received_at >= $1"
DELIVERIES_SINCE = """
SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status IN ('pending', 'retrying')) AS waiting
FROM webhook_deliveries WHERE created_at >= $1
"""
PROJECTION_POSITIONS = """
SELECT projection, topic, count(*) AS partitions, sum("offset" + 1) AS applied,
       max(updated_at) AS updated_at
FROM projection_checkpoints GROUP BY projection, topic ORDER BY projection, topic
"""
# $1 status, $2 reseller, $3 search digits (ICCID prefix or number prefix, with or without +1),
# $4 silent only (active SIMs announced silent, see producers/silence_sweep.py)
SIM_PAGE_AFTER = """
SELECT iccid, current_number, status, number_status, reseller_id, mobility_subscription_id,
       last_rotated_at, rotation_count, inbound_silent_since
FROM sims
WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR reseller_id = $2)
  AND ($3::text IS NULL OR iccid LIKE $3 || '%' OR current_number LIKE '+' || $3 || '%'
       OR current_number LIKE '+1' || $3 || '%')
  AND (NOT $4::boolean OR (inbound_silent_since IS NOT NULL AND status = 'active'))
  AND ($5::text IS NULL OR iccid > $5)
ORDER BY iccid LIMIT $6
"""
SIM_PAGE_BEFORE = """
SELECT iccid, current_number, status, number_status, reseller_id, mobility_subscription_id,
       last_rotated_at, rotation_count, inbound_silent_since
FROM sims
WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR reseller_id = $2)
  AND ($3::text IS NULL OR iccid LIKE $3 || '%' OR current_number LIKE '+' || $3 || '%'
       OR current_number LIKE '+1' || $3 || '%')
  AND (NOT $4::boolean OR (inbound_silent_since IS NOT NULL AND status = 'active'))
  AND iccid < $5
ORDER BY iccid DESC LIMIT $6
"""
SIM_MATCHES = """
SELECT count(*) FROM sims
WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR reseller_id = $2)
  AND ($3::text IS NULL OR iccid LIKE $3 || '%' OR current_number LIKE '+' || $3 || '%'
       OR current_number LIKE '+1' || $3 || '%')
  AND (NOT $4::boolean OR (inbound_silent_since IS NOT NULL AND status = 'active'))
"""
# The SMS the inbound_sms_resolved view gives a SIM, found through indexes instead of through
# the view: (1) tagged with its ICCID; (2) untagged, to a number in the window the SIM held it
# (the latest holder wins, as in the view); (3) untagged, on its gateway port, with no number
# or a number nobody held then. The three are disjoint. Capped: a page shows "1000+".
SIM_SMS_COUNTS = """
SELECT s.iccid, c.sms_count
FROM unnest($1::text[]) AS s (iccid)
LEFT JOIN LATERAL (
    SELECT count(*) AS sms_count FROM (
        (SELECT 1 FROM inbound_sms m WHERE m.iccid = s.iccid LIMIT $2)
        UNION ALL
        (SELECT 1 FROM sim_numbers n
         JOIN inbound_sms m ON m.to_number = n.e164 AND m.received_at >= n.valid_from
              AND (n.valid_to IS NULL OR m.received_at < n.valid_to)
         WHERE n.iccid = s.iccid AND m.iccid IS NULL
           AND NOT EXISTS (
               SELECT 1 FROM sim_numbers later
               WHERE later.e164 = m.to_number AND later.valid_from > n.valid_from
                 AND later.valid_from <= m.received_at
                 AND (later.valid_to IS NULL OR later.valid_to > m.received_at))
         LIMIT $2)
        UNION ALL
        (SELECT 1 FROM gateway_ports p
         JOIN inbound_sms m ON m.gateway_id = p.gateway_id AND m.port = p.port
         WHERE p.iccid = s.iccid AND m.iccid IS NULL
           AND (m.to_number IS NULL OR NOT EXISTS (
               SELECT 1 FROM sim_numbers held
               WHERE held.e164 = m.to_number AND held.valid_from <= m.received_at
                 AND (held.valid_to IS NULL OR held.valid_to > m.received_at)))
         LIMIT $2)
        LIMIT $2
    ) found
) c ON true
"""
SELECT_SIM = """
SELECT iccid, imei, status, mobility_subscription_id, current_number, number_status,
       reseller_id, gateway_id, port, activated_at, last_error, rotation_status, last_rotated_at,
       next_rotation_due_at, rotation_count, rotation_last_error, inbound_silent_since,
       verification_suspect_since, updated_at
FROM sims WHERE iccid = $1
"""
SIM_NUMBERS = """
SELECT e164, source, valid_from, valid_to, verification_status, verification_code,
       sender_iccid, sent_at, verified_at, failed_at
FROM sim_numbers WHERE iccid = $1
ORDER BY valid_from DESC LIMIT 100
"""
# the SIM's own events, plus events elsewhere (Helix calls, webhook deliveries) that share
# their correlation ids; other SIMs' lifecycle events are left out even when correlated
SIM_TIMELINE = """
WITH own AS (
    SELECT id, time, type, payload->>'source' AS source, subject, correlationid, payload
    FROM event_log WHERE subject = $1 ORDER BY time DESC LIMIT $2
)
SELECT * FROM own
UNION ALL
(SELECT e.id, e.time, e.type, e.payload->>'source', e.subject, e.correlationid, e.payload
 FROM event_log e
 WHERE e.correlationid IN (SELECT correlationid FROM own) AND e.subject <> $1
   AND e.type <> ALL($3::text[])
 ORDER BY e.time DESC LIMIT $2)
ORDER BY time DESC LIMIT $2
"""
# the same three paths as SIM_SMS_COUNTS, newest first, each stopping at the limit
SIM_RECENT_SMS = """
SELECT id, message_id, received_at, gateway_id, port, sender, to_number,
       $1::text AS sim_iccid, false AS unknown_sim, body
FROM (
    (SELECT m.* FROM inbound_sms m WHERE m.iccid = $1 ORDER BY m.received_at DESC LIMIT $2)
    UNION ALL
    (SELECT m.* FROM sim_numbers n
     JOIN inbound_sms m ON m.to_number = n.e164 AND m.received_at >= n.valid_from
          AND (n.valid_to IS NULL OR m.received_at < n.valid_to)
     WHERE n.iccid = $1 AND m.iccid IS NULL
       AND NOT EXISTS (
           SELECT 1 FROM sim_numbers later
           WHERE later.e164 = m.to_number AND later.valid_from > n.valid_from
             AND later.valid_from <= m.received_at
             AND (later.valid_to IS NULL OR later.valid_to > m.received_at))
     ORDER BY m.received_at DESC LIMIT $2)
    UNION ALL
    (SELECT m.* FROM gateway_ports p
     JOIN inbound_sms m ON m.gateway_id = p.gateway_id AND m.port = p.port
     WHERE p.iccid = $1 AND m.iccid IS NULL
       AND (m.to_number IS NULL OR NOT EXISTS (
           SELECT 1 FROM sim_numbers held
           WHERE held.e164 = m.to_number AND held.valid_from <= m.received_at
             AND (held.valid_to IS NULL OR held.valid_to > m.received_at)))
     ORDER BY m.received_at DESC LIMIT $2)
) found
ORDER BY received_at DESC LIMIT $2
"""
SIM_TARGETS = """
SELECT iccid, status, imei, current_number, mobility_subscription_id, reseller_id, gateway_id, port
FROM sims WHERE iccid = ANY($1::text[]) ORDER BY iccid
"""
# what the old per-worker "run" endpoints picked, oldest first
RUN_CANDIDATES: dict[RunAction, str] = {
    "activate": """
        SELECT iccid, status, imei, current_number, mobility_subscription_id, reseller_id,
               gateway_id, port
        FROM sims WHERE status = 'pending' AND imei IS NOT NULL
        ORDER BY created_at, iccid LIMIT $1""",
    "finalize": """
        SELECT iccid, status, imei, current_number, mobility_subscription_id, reseller_id,
               gateway_id, port
        FROM sims WHERE status = 'provisioning'
        ORDER BY updated_at, iccid LIMIT $1""",
    "rotate": """
        SELECT iccid, status, imei, current_number, mobility_subscription_id, reseller_id,
               gateway_id, port
        FROM sims WHERE status = 'active' AND rotation_status <> 'rotating'
          -- not rotated in the last 20 h (the scheduler's own slots live in `rotations`)
          AND coalesce(last_rotated_at, activated_at, created_at) <= $2::timestamptz - interval '20 hours'
          AND (rotation_lock_until IS NULL OR rotation_lock_until < $2)
        ORDER BY coalesce(last_rotated_at, activated_at, created_at), iccid LIMIT $1""",
    "sync": """
        SELECT iccid, status, imei, current_number, mobility_subscription_id, reseller_id,
               gateway_id, port
        FROM sims WHERE status = 'active'
        ORDER BY updated_at, iccid LIMIT $1""",
}
# the SIM a carrier subscription belongs to, either way round (sims_subscription indexes the id)
SIM_BY_ICCID = "SELECT iccid, mobility_subscription_id FROM sims WHERE iccid = $1"
SIM_BY_SUBSCRIPTION = """
SELECT iccid, mobility_subscription_id FROM sims WHERE mobility_subscription_id = $1
ORDER BY updated_at DESC LIMIT 1
"""
HIDDEN_DETAILS = frozenset(
    {"iccid", "ref", "command", "requested_by", "body", "request_body", "response_body"}
)
DETAIL_MAX_CHARS = 160


def search_digits(q: str | None) -> str | None:
    """``+1 (555) 012-34`` → ``1555001234``: numbers and ICCIDs are compared as digits."""
    if q is None or not q.strip():
        return None
    return re.sub(r"\D", "", q)


async def overview(pool: asyncpg.Pool, now: datetime) -> Overview:
    day_ago = now - timedelta(hours=24)
    async with pool.acquire() as conn:
        counts = await conn.fetch(SIM_COUNTS)
        sms = await conn.fetchval(SMS_SINCE, day_ago)
        deliveries = await conn.fetchrow(DELIVERIES_SINCE, day_ago)
        positions = await conn.fetch(PROJECTION_POSITIONS)
    by_status = {r["status"]: r["sims"] for r in counts}
    delivered, failed = deliveries["delivered"], deliveries["failed"]
    return Overview(
        as_of=now,
        total_sims=sum(by_status.values()),
        by_status=tuple(StatusCount(status=s, sims=by_status.get(s, 0)) for s in SIM_STATUSES),
        online=sum(r["online"] for r in counts),
        verification_failed=sum(r["failed"] for r in counts),
        silent=sum(r["silent"] for r in counts),
        sms_24h=sms,
        delivered_24h=delivered,
        failed_24h=failed,
        waiting_24h=deliveries["waiting"],
        webhook_success_rate=delivered / (delivered + failed) if delivered + failed else None,
        projections=tuple(ProjectionPosition.model_validate(dict(r)) for r in positions),
    )


async def silent_sim_count(pool: asyncpg.Pool) -> int:
    """Active SIMs announced silent (``sim.inbound_silent``) and not yet resumed."""
    return int(await pool.fetchval(SILENT_SIMS))


async def sim_page(
    pool: asyncpg.Pool,
    *,
    q: str | None = None,
    status: SimStatus | None = None,
    reseller: str | None = None,
    silent: bool = False,
    after: str | None = None,
    before: str | None = None,
    limit: int = PAGE_SIZE,
) -> SimPage:
    """One page in ICCID order; ``after``/``before`` are the cursors of the neighbouring pages."""
    digits = search_digits(q)
    if digits == "":  # letters only: nothing stored is searched by letters
        return SimPage(rows=(), matched=0, next_after=None, prev_before=None)
    filters = (status, reseller or None, digits, silent)
    async with pool.acquire() as conn:
        if before is not None:
            fetched = await conn.fetch(SIM_PAGE_BEFORE, *filters, before, limit + 1)
            fetched.reverse()
        else:
            fetched = await conn.fetch(SIM_PAGE_AFTER, *filters, after, limit + 1)
        matched = await conn.fetchval(SIM_MATCHES, *filters)
        more = len(fetched) > limit
        if before is not None:
            page, has_next, has_prev = fetched[-limit:], True, more
        else:
            page, has_next, has_prev = fetched[:limit], more, after is not None
        iccids = [r["iccid"] for r in page]
        counts = dict(await conn.fetch(SIM_SMS_COUNTS, iccids, SMS_COUNT_CAP))
    rows = tuple(SimRow.model_validate(dict(r) | {"sms_count": counts[r["iccid"]]}) for r in page)
    return SimPage(
        rows=rows,
        matched=matched,
        next_after=rows[-1].iccid if rows and has_next else None,
        prev_before=rows[0].iccid if rows and has_prev else None,
    )


async def sim_detail(
    pool: asyncpg.Pool, iccid: str, *, events: int = 200, sms: int = 20
) -> SimDetail | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SELECT_SIM, iccid)
        if row is None:
            return None
        numbers = await conn.fetch(SIM_NUMBERS, iccid)
        timeline = await conn.fetch(SIM_TIMELINE, iccid, events, sorted(SIM_LIFECYCLE.types))
        recent = await conn.fetch(SIM_RECENT_SMS, iccid, sms)
    return SimDetail(
        sim=Sim.model_validate(dict(row)),
        numbers=tuple(NumberRow.model_validate(dict(r)) for r in numbers),
        timeline=tuple(_timeline_entry(r) for r in timeline),
        sms=tuple(SmsRow.model_validate(dict(r)) for r in recent),
    )


def _timeline_entry(row: Any) -> TimelineEntry:
    data = redact(row["payload"].get("data") or {})
    return TimelineEntry(
        id=row["id"],
        time=row["time"],
        type=row["type"],
        source=row["source"],
        subject=row["subject"],
        correlationid=row["correlationid"],
        actor=data.get("requested_by"),
        details=tuple(
            (key, _short(value))
            for key, value in data.items()
            if key not in HIDDEN_DETAILS and value not in (None, "", [], {})
        ),
    )


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= DETAIL_MAX_CHARS else text[: DETAIL_MAX_CHARS - 1] + "…"


async def sim_targets(pool: asyncpg.Pool, iccids: list[str]) -> list[SimTarget]:
    rows = await pool.fetch(SIM_TARGETS, iccids)
    return [SimTarget.model_validate(dict(r)) for r in rows]


async def run_candidates(
    pool: asyncpg.Pool, action: RunAction, limit: int, now: datetime
) -> list[SimTarget]:
    args = (limit, now) if action == "rotate" else (limit,)
    rows = await pool.fetch(RUN_CANDIDATES[action], *args)
    return [SimTarget.model_validate(dict(r)) for r in rows]


async def subscription_ref(
    pool: asyncpg.Pool, *, iccid: str | None = None, subscription_id: str | None = None
) -> SubscriptionRef | None:
    """The SIM row by ICCID, or the SIM holding a carrier subscription id; None if none."""
    if iccid is not None:
        row = await pool.fetchrow(SIM_BY_ICCID, iccid)
    else:
        row = await pool.fetchrow(SIM_BY_SUBSCRIPTION, subscription_id)
    return None if row is None else SubscriptionRef.model_validate(dict(row))
