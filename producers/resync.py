"""Resync: ``simfleet resellers resync NAME`` → number.online again for each of the reseller's
online numbers, so the webhook flow delivers every one of them once more.

Why a new event rather than the old one re-published: the webhook flow delivers a message id
to an endpoint once (``webhook_claims``), and a message id is an event id. A resync is a new
delivery of the same fact, so each event gets a new identity: ``request_id`` is
``resync:<ref>`` with a fresh ref per resync (the id covers ICCID, number and request id). The
reseller sees a new ``webhook-id`` with the same ``data`` (number, ``online_until``): number
webhooks describe a state, to be applied by ICCID and number, not deduplicated by id across
resyncs. Running the same resync twice sends twice, as an operator clicking twice asks for.

Reads ``sims`` (reseller: ``reseller_sims`` first, as the webhook flow resolves it) and the
``online_until`` of each number's verification; emits on ``sim.lifecycle``. The sims projection
applies these as it applies any number.online: the number stays verified.
"""

from __future__ import annotations

import asyncpg

from events.envelope import new_ref
from events.sim import NumberOnline
from infra.bus import Bus
from infra.clock import Clock
from policies.rotation import RotationPolicy, next_rotation_at

PRODUCER = "simfleet/resync"
EMIT_CHUNK = 500
RESELLER = "SELECT id FROM resellers WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1"
ONLINE_NUMBERS = """
SELECT s.iccid, s.current_number, s.mobility_subscription_id, v.online_until
FROM sims s
LEFT JOIN reseller_sims rs ON rs.iccid = s.iccid
LEFT JOIN LATERAL (
    SELECT online_until FROM verifications
    WHERE iccid = s.iccid AND number = s.current_number AND state = 'online'
    ORDER BY verified_at DESC LIMIT 1
) v ON true
WHERE coalesce(rs.reseller_id, s.reseller_id) = $1
  AND s.status = 'active' AND s.number_status = 'verified' AND s.current_number IS NOT NULL
ORDER BY s.iccid
"""


async def reseller_id_for(pool: asyncpg.Pool, name_or_id: str) -> str | None:
    """The CLI's NAME: a reseller id, or a reseller's name."""
    found: str | None = await pool.fetchval(RESELLER, name_or_id)
    return found


async def resync_reseller(
    pool: asyncpg.Pool,
    bus: Bus,
    clock: Clock,
    reseller_id: str,
    *,
    policy: RotationPolicy | None = None,
) -> int:
    """Re-emits number.online for each online number of the reseller; returns how many."""
    now, ref = clock.now(), f"resync:{new_ref()}"
    policy = policy or RotationPolicy()
    events = [
        NumberOnline.create(
            producer=PRODUCER,
            time=now,
            correlationid=ref,
            iccid=row["iccid"],
            request_id=ref,
            number=row["current_number"],
            mobility_subscription_id=row["mobility_subscription_id"],
            # the verification's own value while it holds; past it, the SIM's next slot
            online_until=row["online_until"]
            if row["online_until"] and row["online_until"] > now
            else next_rotation_at(row["iccid"], None, now, policy),
        )
        for row in await pool.fetch(ONLINE_NUMBERS, reseller_id)
    ]
    for start in range(0, len(events), EMIT_CHUNK):
        await bus.emit_many(events[start : start + EMIT_CHUNK])
    return len(events)
