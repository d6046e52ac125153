"""Log read queries for the dashboard: SMS, webhook deliveries, Helix calls, resellers.

Reads ``inbound_sms_resolved``, ``webhook_deliveries``, ``helix_api_logs``, ``resellers``,
``reseller_sims`` and ``reseller_webhooks``; owns no table. Every log is newest first and
keyset-paginated (``older`` is the cursor of the next page), so a page costs the same at any
depth. Searches walk newest-first and stop at a page: cheap for recent traffic, a full scan
only for a term that matches nothing. Endpoint signing secrets are never selected.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pydantic import Field

from infra.redaction import redact
from projections.read_models import PAGE_SIZE, SmsRow, View

DeliveryStatus = Literal["pending", "retrying", "delivered", "failed"]
BODY_MAX_CHARS = 2000


class SmsPage(View):
    rows: tuple[SmsRow, ...]
    older: int | None


class DeliveryRow(View):
    """One row of ``webhook_deliveries``: the dashboard's deliveries page and the resellers
    JSON API both read it."""

    id: int
    message_id: str
    endpoint: str
    reseller_id: str
    event_type: str
    status: str = Field(description="pending | retrying | delivered | failed")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: float | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime
    iccid: str | None = Field(default=None, description="the SIM the delivered event is about")
    number: str | None = Field(default=None, description="its number (an SMS's: the receiving one)")


class DeliveryPage(View):
    rows: tuple[DeliveryRow, ...]
    older: int | None


class HelixCall(View):
    call_id: str
    operation: str
    iccid: str | None
    mobility_subscription_id: str | None
    method: str
    url: str
    status_code: int | None
    ok: bool
    duration_ms: float
    error: str | None
    called_at: datetime
    request_body: str | None
    response_body: str | None
    run_id: str | None = None  # the run that made the call (a lookup's, or the handled event's)


class HelixPage(View):
    rows: tuple[HelixCall, ...]
    older: str | None


class Endpoint(View):
    endpoint_id: str
    url: str
    event_types: tuple[str, ...]
    enabled: bool
    health: str
    disabled_reason: str | None
    failing_since: datetime | None = None
    health_error: str | None = None
    created_at: datetime


class Reseller(View):
    id: str
    name: str
    created_at: datetime
    sims: int
    endpoints: tuple[Endpoint, ...]


# $1 LIKE-escaped search term (contains), $2 unknown SIMs only, $3 cursor, $4 limit
SMS_PAGE = """
SELECT id, message_id, received_at, gateway_id, port, sender, to_number, sim_iccid,
       unknown_sim, body
FROM inbound_sms_resolved
WHERE ($1::text IS NULL OR to_number LIKE '%' || $1 || '%' OR sender ILIKE '%' || $1 || '%'
       OR sim_iccid LIKE '%' || $1 || '%' OR body ILIKE '%' || $1 || '%')
  AND (NOT $2::boolean OR unknown_sim)
  AND ($3::bigint IS NULL OR id < $3)
ORDER BY id DESC LIMIT $4
"""
# the SIM and number a delivery is about: an SMS's (resolved like the SMS log), else the event's
DELIVERY_PAGE = """
SELECT d.id, d.message_id, d.endpoint, d.reseller_id, d.event_type, d.status, d.attempts,
       d.last_status_code, d.last_error, d.last_latency_ms, d.next_attempt_at, d.delivered_at,
       d.created_at, d.updated_at,
       coalesce(s.sim_iccid, e.payload->'data'->>'iccid') AS iccid,
       coalesce(s.to_number, e.payload->'data'->>'number') AS number
FROM (
    SELECT * FROM webhook_deliveries
    WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR reseller_id = $2)
      AND ($3::text IS NULL OR endpoint = $3) AND ($4::bigint IS NULL OR id < $4)
    ORDER BY id DESC LIMIT $5
) d
LEFT JOIN inbound_sms_resolved s ON s.message_id = d.message_id
LEFT JOIN event_log e ON e.id = d.message_id AND s.message_id IS NULL
ORDER BY d.id DESC
"""
DELIVERIES_BY_ID = """
SELECT id, message_id, endpoint, reseller_id, event_type, status, attempts, last_status_code,
       last_error, last_latency_ms, next_attempt_at, delivered_at, created_at, updated_at
FROM webhook_deliveries WHERE id = ANY($1::bigint[]) ORDER BY id
"""
HELIX_PAGE = """
SELECT call_id, operation, iccid, mobility_subscription_id, method, url, status_code, ok,
       duration_ms, error, called_at, request_body, response_body, run_id
FROM helix_api_logs
WHERE ($1::text IS NULL OR operation = $1) AND ($2::text IS NULL OR iccid = $2)
  AND ($3::boolean IS NULL OR ok = $3)
  AND ($4::timestamptz IS NULL OR (called_at, call_id) < ($4, $5::text))
ORDER BY called_at DESC, call_id DESC LIMIT $6
"""
RESELLERS = """
SELECT r.id, r.name, r.created_at, coalesce(s.sims, 0) AS sims
FROM resellers r
LEFT JOIN (SELECT reseller_id, count(*) AS sims FROM reseller_sims GROUP BY reseller_id) s
       ON s.reseller_id = r.id
ORDER BY r.id
"""
# the sealed signing secret is deliberately not selected
ENDPOINTS = """
SELECT reseller_id, endpoint_id, url, event_types, enabled, health, disabled_reason, failing_since,
       health_error, created_at
FROM reseller_webhooks ORDER BY reseller_id, endpoint_id
"""


def like_escape(term: str | None) -> str | None:
    if term is None or not term.strip():
        return None
    return term.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def sms_page(
    pool: asyncpg.Pool,
    *,
    q: str | None = None,
    unknown_only: bool = False,
    older: int | None = None,
    limit: int = PAGE_SIZE,
) -> SmsPage:
    rows = await pool.fetch(SMS_PAGE, like_escape(q), unknown_only, older, limit + 1)
    found = [SmsRow.model_validate(dict(r)) for r in rows]
    more = len(found) > limit
    return SmsPage(rows=tuple(found[:limit]), older=found[limit - 1].id if more else None)


async def delivery_page(
    pool: asyncpg.Pool,
    *,
    status: DeliveryStatus | None = None,
    reseller: str | None = None,
    endpoint: str | None = None,
    older: int | None = None,
    limit: int = PAGE_SIZE,
) -> DeliveryPage:
    args = (status, reseller or None, endpoint or None, older, limit + 1)
    found = [DeliveryRow.model_validate(dict(r)) for r in await pool.fetch(DELIVERY_PAGE, *args)]
    more = len(found) > limit
    return DeliveryPage(rows=tuple(found[:limit]), older=found[limit - 1].id if more else None)


async def deliveries_by_id(pool: asyncpg.Pool, ids: list[int]) -> list[DeliveryRow]:
    return [DeliveryRow.model_validate(dict(r)) for r in await pool.fetch(DELIVERIES_BY_ID, ids)]


async def helix_page(
    pool: asyncpg.Pool,
    *,
    operation: str | None = None,
    iccid: str | None = None,
    ok: bool | None = None,
    older: str | None = None,
    limit: int = PAGE_SIZE,
) -> HelixPage:
    """``older`` is ``<called_at ISO>|<call_id>`` of the last row of the previous page."""
    at, call_id = _helix_cursor(older)
    args = (operation or None, iccid or None, ok, at, call_id, limit + 1)
    found = [_helix_call(r) for r in await pool.fetch(HELIX_PAGE, *args)]
    more = len(found) > limit
    last = found[limit - 1] if more else None
    return HelixPage(
        rows=tuple(found[:limit]),
        older=f"{last.called_at.isoformat()}|{last.call_id}" if last else None,
    )


class BadCursor(ValueError):
    """A page cursor this module did not hand out."""


def _helix_cursor(older: str | None) -> tuple[datetime | None, str | None]:
    if not older:
        return None, None
    at, _, call_id = older.partition("|")
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        message = f"older={older!r} is not a Helix log cursor (<time ISO>|<call id>)"
        raise BadCursor(message) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC), call_id


def _helix_call(row: Any) -> HelixCall:
    fields = dict(row)
    for key in ("request_body", "response_body"):
        fields[key] = _body_text(fields[key])
    return HelixCall.model_validate(fields)


def _body_text(body: Any) -> str | None:
    if body is None:
        return None
    text = json.dumps(redact(body), ensure_ascii=False, indent=1)
    return text if len(text) <= BODY_MAX_CHARS else text[: BODY_MAX_CHARS - 1] + "…"


async def resellers(pool: asyncpg.Pool) -> list[Reseller]:
    async with pool.acquire() as conn:
        found = await conn.fetch(RESELLERS)
        endpoints = await conn.fetch(ENDPOINTS)
    by_reseller: dict[str, list[Endpoint]] = {}
    for e in endpoints:
        fields = dict(e) | {"url": display_url(e["url"]), "event_types": tuple(e["event_types"])}
        by_reseller.setdefault(e["reseller_id"], []).append(Endpoint.model_validate(fields))
    return [
        Reseller.model_validate(dict(r) | {"endpoints": tuple(by_reseller.get(r["id"], ()))})
        for r in found
    ]


def display_url(url: str) -> str:
    """An endpoint URL as shown: user info and query values masked (they may hold tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    if parts.username or parts.password:
        netloc = f"***@{netloc}"
    query = "&".join(f"{p.partition('=')[0]}=***" for p in parts.query.split("&") if p)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
