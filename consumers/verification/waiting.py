"""Verifications waiting for a sender (migration 0090).

A verification nobody could send (no other active SIM in a known, registered gateway port:
the fleet's first SIM, or a SIM whose neighbours' ports were not reported yet) ends
``verification.skipped`` and waits (``awaiting_sender``). It is asked again
(``verification.requested``, same number, attempt and avoid lists) as soon as a possible sender
exists that was not there when it was skipped: when another SIM's number comes online (the
verification consumer, at once) and on every verification sweep of the scheduler (a SIM whose
port was learnt since). Rows are claimed with SKIP LOCKED and superseded in the transaction
that emits, so each waiting verification is asked again once, whoever finds the sender.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from consumers.verification.guards import ask_again_claimed
from events.sim import VerificationRequested
from infra.bus import Bus

# where a SIM is now: its newest port report (status push or SMS push), else the sheet's seat
LOCATED_SIMS = """
SELECT s.iccid, s.status, s.number_status, s.updated_at,
       coalesce(gp.gateway_id, s.gateway_id) AS gateway_id, coalesce(gp.port, s.port) AS port,
       coalesce(gp.status_code, 3) AS port_status, greatest(gp.updated_at, s.updated_at) AS changed_at
FROM sims s
LEFT JOIN LATERAL (
    SELECT g.gateway_id, g.port, g.status_code, g.updated_at FROM gateway_ports g
    WHERE g.iccid = s.iccid ORDER BY g.updated_at DESC LIMIT 1
) gp ON true
"""
# a sender can send whatever its own number's state: it needs service in a known port
CAN_SEND = "located.status = 'active' AND located.port IS NOT NULL AND located.port_status = 3"
CLAIM_AWAITING = f"""
SELECT v.* FROM verifications v
JOIN sims t ON t.iccid = v.iccid AND t.status = 'active' AND t.current_number = v.number
WHERE v.state = 'skipped' AND v.awaiting_sender
  AND EXISTS (
      SELECT 1 FROM ({LOCATED_SIMS}) located
      WHERE located.iccid <> v.iccid AND {CAN_SEND}
        AND (located.changed_at > v.updated_at OR located.iccid = $1))
ORDER BY v.updated_at LIMIT $2 FOR UPDATE OF v SKIP LOCKED
"""  # noqa: S608 (constant fragments)


async def resume_awaiting_sender(
    pool: asyncpg.Pool, bus: Bus, now: datetime, producer: str, *, sender: str | None = None,
    batch: int = 500,
) -> list[VerificationRequested]:  # fmt: skip
    """Waiting verifications for which a new possible sender exists (one that appeared or
    changed since they were skipped, or ``sender``: a SIM just online, whatever the read
    tables say yet) → verification.requested."""
    return await ask_again_claimed(
        pool, bus, now, producer, claim=CLAIM_AWAITING, args=(sender,), batch=batch,
        ref="sender-available", reason="a sender is available",
    )  # fmt: skip
