"""What commands and carrier lookups read about SIMs: targets by ICCID, the SIMs a "run" action
would pick, and the SIM a carrier subscription belongs to.

Reads ``sims``; owns no table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import asyncpg

from projections.read_models import View

RunAction = Literal["activate", "finalize", "rotate", "sync"]


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
    # the activation request still waiting for its outcome (queued or in flight), if any
    activation_requested_at: datetime | None = None


SIM_TARGETS = """
SELECT iccid, status, imei, current_number, mobility_subscription_id, reseller_id, gateway_id, port,
       activation_requested_at
FROM sims WHERE iccid = ANY($1::text[]) ORDER BY iccid
"""
# what the old per-worker "run" endpoints picked, oldest first
RUN_CANDIDATES: dict[RunAction, str] = {
    "activate": """
        SELECT iccid, status, imei, current_number, mobility_subscription_id, reseller_id,
               gateway_id, port, activation_requested_at
        FROM sims WHERE status = 'pending' AND imei IS NOT NULL
          -- a request still queued or in flight is not asked again (unless stale, $2)
          AND (activation_requested_at IS NULL OR activation_requested_at < $2)
        ORDER BY created_at, iccid LIMIT $1""",
    "finalize": """
        SELECT iccid, status, imei, current_number, mobility_subscription_id, reseller_id,
               gateway_id, port
        FROM sims WHERE status IN ('provisioning', 'error')
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
        FROM sims WHERE status IN ('active', 'suspended', 'error')
        ORDER BY updated_at, iccid LIMIT $1""",
}
# the SIM a carrier subscription belongs to, either way round (sims_subscription indexes the id)
SIM_BY_ICCID = "SELECT iccid, mobility_subscription_id FROM sims WHERE iccid = $1"
SIM_BY_SUBSCRIPTION = """
SELECT iccid, mobility_subscription_id FROM sims WHERE mobility_subscription_id = $1
ORDER BY updated_at DESC LIMIT 1
"""


async def sim_targets(pool: asyncpg.Pool, iccids: list[str]) -> list[SimTarget]:
    rows = await pool.fetch(SIM_TARGETS, iccids)
    return [SimTarget.model_validate(dict(r)) for r in rows]


async def run_candidates(
    pool: asyncpg.Pool, action: RunAction, limit: int, now: datetime, *, stale_before: datetime
) -> list[SimTarget]:
    """``stale_before``: an activation requested before it no longer counts as in flight."""
    extra = {"rotate": (now,), "activate": (stale_before,)}
    rows = await pool.fetch(RUN_CANDIDATES[action], limit, *extra.get(action, ()))
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
