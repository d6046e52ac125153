"""SIM page read queries: one SIM's row, its numbers, its timeline and its recent SMS.

Reads ``sims``, ``sim_numbers``, ``event_log``, ``inbound_sms`` and ``gateway_ports``; owns no
table. The SIM's SMS are found as the SIM table counts them (``sim_list_queries``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from events.topics import SIM_LIFECYCLE
from infra.redaction import redact
from projections.read_models import SmsRow, View


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
    # an action that kept failing and waits for an operator (sim.operator_needed)
    operator_needed: str | None = None
    operator_needed_action: str | None = None
    operator_needed_since: datetime | None = None
    activation_requested_at: datetime | None = None  # an activation queued or in flight
    latest_sms_gateway_id: str | None = None  # where its latest SMS came in
    latest_sms_port: str | None = None
    latest_sms_at: datetime | None = None


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
    repeats: int = 1  # the same fact recorded again (a re-emitted outcome), shown once


class SimDetail(View):
    sim: Sim
    numbers: tuple[NumberRow, ...]
    timeline: tuple[TimelineEntry, ...]
    sms: tuple[SmsRow, ...]


# where the SIM is: the newest port report (a status push, or an SMS push naming port and
# ICCID), else the seat the import sheet gave; and where its latest SMS came in
SELECT_SIM = """
SELECT s.iccid, s.imei, s.status, s.mobility_subscription_id, s.current_number, s.number_status,
       s.reseller_id, coalesce(gp.gateway_id, s.gateway_id) AS gateway_id,
       coalesce(gp.port, s.port) AS port, s.activated_at, s.last_error, s.rotation_status,
       s.last_rotated_at, s.next_rotation_due_at, s.rotation_count, s.rotation_last_error,
       s.inbound_silent_since, s.verification_suspect_since, s.operator_needed,
       s.operator_needed_action, s.operator_needed_since, s.activation_requested_at, s.updated_at,
       m.gateway_id AS latest_sms_gateway_id, m.port AS latest_sms_port,
       m.received_at AS latest_sms_at
FROM sims s
LEFT JOIN LATERAL (
    SELECT g.gateway_id, g.port FROM gateway_ports g
    WHERE g.iccid = s.iccid ORDER BY g.updated_at DESC LIMIT 1
) gp ON true
LEFT JOIN LATERAL (
    SELECT * FROM (
        (SELECT i.gateway_id, i.port, i.received_at FROM inbound_sms i
         WHERE i.iccid = s.iccid ORDER BY i.received_at DESC LIMIT 1)
        UNION ALL
        (SELECT i.gateway_id, i.port, i.received_at FROM inbound_sms i
         WHERE i.to_number = s.current_number AND i.iccid IS NULL
         ORDER BY i.received_at DESC LIMIT 1)
    ) latest ORDER BY received_at DESC LIMIT 1
) m ON true
WHERE s.iccid = $1
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
# the same three paths as sim_list_queries.SIM_SMS_COUNTS, newest first, each stopping at the limit
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
HIDDEN_DETAILS = frozenset(
    {"iccid", "ref", "command", "requested_by", "body", "request_body", "response_body"}
)
DETAIL_MAX_CHARS = 160


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
        timeline=once_each(_timeline_entry(r) for r in timeline),
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


def once_each(entries: Iterable[TimelineEntry]) -> tuple[TimelineEntry, ...]:
    """One row per fact: an event recorded again under another id (a redelivered request's
    outcome, a re-imported sheet's request) with the same time, type, subject and details is
    counted on the first row instead of repeated."""
    kept: dict[tuple[object, ...], TimelineEntry] = {}
    for entry in entries:
        key = (entry.time, entry.type, entry.subject, entry.source, entry.details)
        seen = kept.get(key)
        kept[key] = entry if seen is None else seen.model_copy(update={"repeats": seen.repeats + 1})
    return tuple(kept.values())


def _short(value: Any) -> str:
    text = readable(value)
    return text if len(text) <= DETAIL_MAX_CHARS else text[: DETAIL_MAX_CHARS - 1] + "…"


def readable(value: Any) -> str:
    """A detail as an operator reads it: yes/no, lists joined, objects as key=value."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(readable(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={readable(v)}" for k, v in value.items())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
