"""Read queries of the reseller API and portal: always one reseller's own rows.

Every query takes the caller's reseller id and filters on it in SQL, so a row of another
reseller reads exactly like a row that does not exist. Reads ``reseller_tokens``,
``reseller_token_uses``,
``reseller_sims``, ``sims``, ``sim_numbers``, ``inbound_sms_resolved``, ``webhook_deliveries``,
``webhook_attempts``, ``reseller_webhooks`` (never its secrets); owns no table. An SMS belongs to
the reseller holding its SIM when it arrived: one received before the SIM was assigned to it
stays with the previous holder.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import Field

from projections.read_models import View

LIST_ISSUED = """
SELECT t.token_id, t.reseller_id, t.name, t.scope, t.expires_at, t.issued_by, t.issued_at,
       t.revoked_at, t.revoked_by, u.last_used_at
FROM reseller_tokens t LEFT JOIN reseller_token_uses u ON u.token_id = t.token_id
WHERE t.reseller_id = $1 ORDER BY t.issued_at, t.token_id
"""
ISSUED_BY_HASH = """
SELECT t.token_id, t.reseller_id, t.name, t.scope, t.expires_at, t.issued_by, t.issued_at,
       t.revoked_at, t.revoked_by, u.last_used_at
FROM reseller_tokens t LEFT JOIN reseller_token_uses u ON u.token_id = t.token_id
WHERE t.token_hash = $1
"""
SIMS = """
SELECT s.iccid, s.status, s.current_number AS number, s.number_status,
       coalesce(s.number_status = 'verified', false) AS online, n.verified_at AS online_since,
       n.valid_from AS number_since, rs.assigned_at
FROM reseller_sims rs
JOIN sims s ON s.iccid = rs.iccid
LEFT JOIN LATERAL (
    SELECT valid_from, verified_at FROM sim_numbers sn
    WHERE sn.iccid = s.iccid AND sn.e164 = s.current_number AND sn.valid_to IS NULL
    ORDER BY sn.valid_from DESC LIMIT 1
) n ON true
WHERE rs.reseller_id = $1 AND ($2::text IS NULL OR s.iccid = $2)
  AND ($3::text IS NULL OR s.current_number = $3)
ORDER BY s.iccid
"""
SMS_PAGE = """
SELECT m.id, m.message_id, m.received_at, m.sender, m.to_number, m.sim_iccid AS iccid, m.body
FROM inbound_sms_resolved m
JOIN reseller_sims rs ON rs.iccid = m.sim_iccid AND rs.reseller_id = $1
WHERE m.received_at >= rs.assigned_at
  AND ($2::text IS NULL OR m.to_number = $2)
  AND ($3::timestamptz IS NULL OR m.received_at >= $3)
  AND ($4::timestamptz IS NULL OR m.received_at < $4)
  AND ($5::bigint IS NULL OR m.id < $5)
  AND ($6::text IS NULL OR m.message_id = $6)
ORDER BY m.id DESC LIMIT $7
"""
DELIVERY_PAGE = """
SELECT id, message_id, endpoint AS endpoint_id, event_type, status, attempts, last_status_code,
       last_error, last_latency_ms, next_attempt_at, delivered_at, created_at, updated_at
FROM webhook_deliveries
WHERE reseller_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR endpoint = $3)
  AND ($4::bigint IS NULL OR id < $4) AND ($5::bigint IS NULL OR id = $5)
ORDER BY id DESC LIMIT $6
"""
ATTEMPTS = """
SELECT attempt, succeeded, status_code, latency_ms, error, response, attempted_at
FROM webhook_attempts
WHERE reseller_id = $1 AND message_id = $2 AND endpoint_id = $3
ORDER BY attempt
"""
ENDPOINTS = """
SELECT endpoint_id, url, event_types, enabled, health, disabled_reason, disabled_at, failing_since,
       health_error, previous_valid_until, created_at,
       (SELECT max(attempted_at) FROM webhook_attempts a
        WHERE a.endpoint_id = w.endpoint_id AND a.reseller_id = w.reseller_id AND a.succeeded)
           AS last_success_at
FROM reseller_webhooks w
WHERE reseller_id = $1 AND ($2::text IS NULL OR endpoint_id = $2)
ORDER BY created_at, endpoint_id
"""


class TokenView(View):
    token_id: str
    reseller_id: str
    name: str
    scope: str = Field(description="read | read-write")
    expires_at: datetime
    issued_by: str
    issued_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None = Field(description="at most a minute behind")

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


class SimView(View):
    iccid: str
    status: str
    number: str | None = Field(description="current number (E.164)")
    number_status: str | None = Field(description="pending | sent | verified | failed | skipped")
    online: bool = Field(description="the current number is verified: it receives SMS")
    online_since: datetime | None
    number_since: datetime | None
    assigned_at: datetime


class SmsView(View):
    id: int = Field(description="the SMS's position; pass it as `older` for the next page")
    message_id: str
    received_at: datetime
    sender: str
    to_number: str | None
    iccid: str | None
    body: str


class SmsPage(View):
    rows: tuple[SmsView, ...]
    older: int | None = Field(description="cursor of the next (older) page; null on the last")


class AttemptView(View):
    attempt: int
    succeeded: bool
    status_code: int | None
    latency_ms: float | None
    error: str | None
    response: str | None = Field(description="the start of the endpoint's answer")
    attempted_at: datetime


class DeliveryView(View):
    id: int
    message_id: str
    endpoint_id: str
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


class DeliveryPage(View):
    rows: tuple[DeliveryView, ...]
    older: int | None


class DeliveryDetail(View):
    delivery: DeliveryView
    attempts: tuple[AttemptView, ...]


class EndpointView(View):
    endpoint_id: str
    url: str
    event_types: list[str] = Field(description="subscribed types; empty = all")
    enabled: bool = Field(description="false: paused, or disabled (410 Gone, failing too long)")
    health: str = Field(description="healthy | failing | disabled")
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    health_error: str | None
    previous_valid_until: datetime | None = Field(
        description="after a rotation: the previous secret signs too until then"
    )
    created_at: datetime
    last_success_at: datetime | None


async def list_tokens(pool: asyncpg.Pool, reseller_id: str) -> list[TokenView]:
    return [TokenView(**dict(r)) for r in await pool.fetch(LIST_ISSUED, reseller_id)]


async def token_by_hash(pool: asyncpg.Pool, hashed: str) -> TokenView | None:
    row = await pool.fetchrow(ISSUED_BY_HASH, hashed)
    return None if row is None else TokenView(**dict(row))


async def sims(
    pool: asyncpg.Pool, reseller_id: str, *, iccid: str | None = None, number: str | None = None
) -> list[SimView]:
    return [SimView(**dict(r)) for r in await pool.fetch(SIMS, reseller_id, iccid, number)]


async def sms_page(
    pool: asyncpg.Pool,
    reseller_id: str,
    *,
    number: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    older: int | None = None,
    message_id: str | None = None,
    limit: int = 50,
) -> SmsPage:
    args = (reseller_id, number, since, until, older, message_id, limit + 1)
    found = [SmsView(**dict(r)) for r in await pool.fetch(SMS_PAGE, *args)]
    more = len(found) > limit
    return SmsPage(rows=tuple(found[:limit]), older=found[limit - 1].id if more else None)


async def delivery_page(
    pool: asyncpg.Pool,
    reseller_id: str,
    *,
    status: str | None = None,
    endpoint_id: str | None = None,
    older: int | None = None,
    limit: int = 50,
) -> DeliveryPage:
    args = (reseller_id, status, endpoint_id, older, None, limit + 1)
    found = [DeliveryView(**dict(r)) for r in await pool.fetch(DELIVERY_PAGE, *args)]
    more = len(found) > limit
    return DeliveryPage(rows=tuple(found[:limit]), older=found[limit - 1].id if more else None)


async def delivery(pool: asyncpg.Pool, reseller_id: str, delivery_id: int) -> DeliveryDetail | None:
    row = await pool.fetchrow(DELIVERY_PAGE, reseller_id, None, None, None, delivery_id, 1)
    if row is None:
        return None
    found = DeliveryView(**dict(row))
    attempts = await pool.fetch(ATTEMPTS, reseller_id, found.message_id, found.endpoint_id)
    return DeliveryDetail(delivery=found, attempts=tuple(AttemptView(**dict(a)) for a in attempts))


async def endpoints(pool: asyncpg.Pool, reseller_id: str) -> list[EndpointView]:
    return [EndpointView(**dict(r)) for r in await pool.fetch(ENDPOINTS, reseller_id, None)]


async def endpoint(pool: asyncpg.Pool, reseller_id: str, endpoint_id: str) -> EndpointView | None:
    row = await pool.fetchrow(ENDPOINTS, reseller_id, endpoint_id)
    return None if row is None else EndpointView(**dict(row))
