"""SIM table read queries: one page of SIMs, filtered and searched, with their SMS counts.

Reads ``sims``, ``sim_numbers``, ``inbound_sms`` and ``gateway_ports``; owns no table.

Scale notes (100,000 SIMs): the SIM table is keyset-paginated on ``iccid`` (never OFFSET) and
counts SMS only for the page's rows, capped. An SMS belongs to the SIM ``inbound_sms_resolved``
names, but that view cannot be filtered by SIM through an index; per-SIM reads restate its rule
as three indexed paths (see ``SIM_SMS_COUNTS``), and a test holds the two to the same answer.
"""

from __future__ import annotations

import re
from datetime import datetime

import asyncpg

from projections.read_models import PAGE_SIZE, SimStatus, View

SMS_COUNT_CAP = 1000  # per SIM on the SIM table; the SIM's page lists its SMS


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
    operator_needed_action: str | None = None  # an action given up on: an operator decides


class SimPage(View):
    rows: tuple[SimRow, ...]
    matched: int
    next_after: str | None
    prev_before: str | None


# $1 status, $2 reseller, $3 search digits (ICCID prefix or number prefix, with or without +1),
# $4 silent only (active SIMs announced silent, see producers/silence_sweep.py)
SIM_PAGE_AFTER = """
SELECT iccid, current_number, status, number_status, reseller_id, mobility_subscription_id,
       last_rotated_at, rotation_count, inbound_silent_since, operator_needed_action
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
       last_rotated_at, rotation_count, inbound_silent_since, operator_needed_action
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


def search_digits(q: str | None) -> str | None:
    """``+1 (555) 012-34`` → ``1555001234``: numbers and ICCIDs are compared as digits."""
    if q is None or not q.strip():
        return None
    return re.sub(r"\D", "", q)


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
