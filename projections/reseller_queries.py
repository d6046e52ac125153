"""Read queries on resellers, endpoints and deliveries for the dashboard, API and CLI.

Small frozen models, never raw records; no secret, not even sealed, leaves through here.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from projections.log_queries import DeliveryRow

LIST_RESELLERS = """
SELECT r.id, r.name, r.created_at,
       (SELECT count(*) FROM reseller_webhooks w WHERE w.reseller_id = r.id) AS endpoints,
       (SELECT count(*) FROM reseller_sims s WHERE s.reseller_id = r.id) AS sims
FROM resellers r ORDER BY r.id
"""
GET_RESELLER = "SELECT id, name, created_at, 0 AS endpoints, 0 AS sims FROM resellers WHERE id = $1"
LIST_ENDPOINTS = """
SELECT endpoint_id, reseller_id, url, event_types, enabled, health, disabled_reason, disabled_at,
       failing_since, health_error, previous_valid_until, created_at
FROM reseller_webhooks WHERE reseller_id = $1 ORDER BY created_at, endpoint_id
"""
UNHEALTHY_ENDPOINTS = """
SELECT endpoint_id, reseller_id, url, event_types, enabled, health, disabled_reason, disabled_at,
       failing_since, health_error, previous_valid_until, created_at
FROM reseller_webhooks WHERE health <> 'healthy' OR NOT enabled
ORDER BY enabled, failing_since NULLS LAST, endpoint_id LIMIT $1
"""
# webhook_claims is the webhook consumer's outbox (not a projection): what an endpoint missed is
# known only there (deliveries skipped while it was disabled never reached an attempt)
COUNT_MISSED = """
SELECT count(*) FROM webhook_claims
WHERE endpoint_id = $1 AND state IN ('failed', 'skipped') AND created_at >= $2
"""
LIST_DELIVERIES = """
SELECT id, message_id, endpoint, reseller_id, event_type, status, attempts, last_status_code,
       last_error, last_latency_ms, next_attempt_at, delivered_at, created_at, updated_at
FROM webhook_deliveries
WHERE reseller_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR endpoint = $3)
ORDER BY created_at DESC, message_id LIMIT $4
"""


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class ResellerView(_Row):
    id: str
    name: str
    created_at: datetime
    endpoints: int = Field(description="registered endpoints")
    sims: int = Field(description="SIMs assigned")


class EndpointView(_Row):
    endpoint_id: str
    reseller_id: str
    url: str
    event_types: list[str] = Field(description="subscribed types; empty = all")
    enabled: bool
    health: str
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None = Field(description="first failure of the current streak")
    health_error: str | None = Field(description="while failing: the last error")
    previous_valid_until: datetime | None = Field(
        description="during a rotation: until then the previous secret signs too"
    )
    created_at: datetime


async def list_resellers(pool: asyncpg.Pool) -> list[ResellerView]:
    return [ResellerView(**dict(r)) for r in await pool.fetch(LIST_RESELLERS)]


async def get_reseller(pool: asyncpg.Pool, reseller_id: str) -> ResellerView | None:
    row = await pool.fetchrow(GET_RESELLER, reseller_id)
    return None if row is None else ResellerView(**dict(row))


async def list_endpoints(pool: asyncpg.Pool, reseller_id: str) -> list[EndpointView]:
    return [EndpointView(**dict(r)) for r in await pool.fetch(LIST_ENDPOINTS, reseller_id)]


async def list_deliveries(
    pool: asyncpg.Pool,
    reseller_id: str,
    *,
    status: str | None = None,
    endpoint_id: str | None = None,
    limit: int = 100,
) -> list[DeliveryRow]:
    rows = await pool.fetch(LIST_DELIVERIES, reseller_id, status, endpoint_id, limit)
    return [DeliveryRow(**dict(r)) for r in rows]


async def get_endpoint(
    pool: asyncpg.Pool, reseller_id: str, endpoint_id: str
) -> EndpointView | None:
    found = [e for e in await list_endpoints(pool, reseller_id) if e.endpoint_id == endpoint_id]
    return found[0] if found else None


async def unhealthy_endpoints(pool: asyncpg.Pool, limit: int = 20) -> list[EndpointView]:
    """Disabled and failing endpoints, disabled first (the dashboard's banner)."""
    return [EndpointView(**dict(r)) for r in await pool.fetch(UNHEALTHY_ENDPOINTS, limit)]


async def count_missed(pool: asyncpg.Pool, endpoint_id: str, since: datetime) -> int:
    """Deliveries to the endpoint since ``since`` that failed or were skipped (disabled)."""
    return int(await pool.fetchval(COUNT_MISSED, endpoint_id, since))
