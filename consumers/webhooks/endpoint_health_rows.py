"""The ``endpoint_health`` table as endpoint health folds it: per endpoint, its ``Health`` and
the last applied offset of each topic it reads (deliveries, registry).

A batch stubs then locks its endpoints' rows (in endpoint order: members lock alike, never in a
deadlock), folds, and saves them in the same transaction; the clock's sweep claims the failing
rows it may disable with SKIP LOCKED.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from consumers.webhooks.endpoint_health_rules import Health

LOCK = """
SELECT endpoint_id, reseller_id, state, failures, failing_since, last_failure_at, last_success_at,
    last_error, last_status_code, last_message_id,
    delivery_offset, registry_offset
FROM endpoint_health WHERE endpoint_id = ANY($1::text[]) ORDER BY endpoint_id FOR UPDATE
"""
UPSERT = """
INSERT INTO endpoint_health (endpoint_id, reseller_id, state, failures, failing_since, last_failure_at, last_success_at,
    last_error, last_status_code, last_message_id,
    delivery_offset, registry_offset, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
ON CONFLICT (endpoint_id) DO UPDATE SET
    reseller_id = EXCLUDED.reseller_id, state = EXCLUDED.state, failures = EXCLUDED.failures,
    failing_since = EXCLUDED.failing_since, last_failure_at = EXCLUDED.last_failure_at,
    last_success_at = EXCLUDED.last_success_at, last_error = EXCLUDED.last_error,
    last_status_code = EXCLUDED.last_status_code, last_message_id = EXCLUDED.last_message_id,
    delivery_offset = EXCLUDED.delivery_offset, registry_offset = EXCLUDED.registry_offset,
    updated_at = now()
"""
# every row exists before the lock: two members creating one row at once would each fold from
# nothing (delivery and registry events of an endpoint may be on different members)
STUB = """
INSERT INTO endpoint_health (endpoint_id, reseller_id)
SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (endpoint_id) DO NOTHING
"""
DELETE = "DELETE FROM endpoint_health WHERE endpoint_id = ANY($1::text[])"
# still registered (a removed endpoint's late failures never disable anything)
CLAIM_OVERDUE = """
SELECT h.* FROM endpoint_health h
WHERE h.state = 'failing' AND h.failing_since <= $1
  AND EXISTS (SELECT 1 FROM reseller_webhooks w WHERE w.endpoint_id = h.endpoint_id AND w.enabled)
ORDER BY h.endpoint_id LIMIT 500 FOR UPDATE OF h SKIP LOCKED
"""
MARK_DISABLED = (
    "UPDATE endpoint_health SET state = 'disabled', updated_at = now() WHERE endpoint_id = $1"
)


@dataclass
class Row:
    health: Health
    delivery_offset: int = -1
    registry_offset: int = -1
    removed: bool = False


async def lock_rows(conn: asyncpg.Connection, owners: Mapping[str, str]) -> dict[str, Row]:
    """The rows of these endpoints (endpoint → reseller), created empty where missing, locked
    until the transaction ends."""
    ids = sorted(owners)
    await conn.execute(STUB, ids, [owners[i] for i in ids])
    return {r["endpoint_id"]: _row(r) for r in await conn.fetch(LOCK, ids)}


async def save_rows(conn: asyncpg.Connection, rows: Mapping[str, Row]) -> None:
    for row in rows.values():
        if not row.removed:
            await conn.execute(UPSERT, *_values(row))
    await conn.execute(DELETE, [i for i, row in rows.items() if row.removed])


async def claim_overdue(conn: asyncpg.Connection, failing_since: datetime) -> list[Health]:
    """Registered endpoints failing since ``failing_since`` or earlier, locked (others skipped)."""
    return [_health(r) for r in await conn.fetch(CLAIM_OVERDUE, failing_since)]


async def mark_disabled(conn: asyncpg.Connection, endpoint_id: str) -> None:
    await conn.execute(MARK_DISABLED, endpoint_id)


def _health(r: asyncpg.Record) -> Health:
    return Health(
        r["endpoint_id"], r["reseller_id"], r["state"], r["failures"], r["failing_since"],
        r["last_failure_at"], r["last_success_at"], r["last_error"], r["last_status_code"],
        r["last_message_id"],
    )  # fmt: skip


def _row(r: asyncpg.Record) -> Row:
    return Row(_health(r), r["delivery_offset"], r["registry_offset"])


def _values(row: Row) -> tuple[object, ...]:
    h = row.health
    return (
        h.endpoint_id, h.reseller_id, h.state, h.failures, h.failing_since, h.last_failure_at,
        h.last_success_at, h.last_error, h.last_status_code, h.last_message_id,
        row.delivery_offset, row.registry_offset,
    )  # fmt: skip
