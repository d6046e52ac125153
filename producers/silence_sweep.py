"""Inbound silence sweep (run by the scheduler): online SIMs quiet past their threshold →
sim.inbound_silent, once per silence.

Online: active, current number verified, a gateway port reporting it registered. Quiet since:
the SIM's last SMS (``sim_silence.last_sms_at``, kept by ``consumers/silence.py``) or its
number's verification, whichever is later — a SIM that was never online is never silent, and a
freshly verified (or rotated) number starts its quiet afresh. The threshold is
``SILENCE_AFTER_S`` or the SIM's reseller's entry in ``SILENCE_RESELLER_AFTER_S``.

Each silence is claimed in ``sim_silence`` in the transaction that emits it: the row turns
``silent`` only if it was not, and only if no SMS was recorded after the quiet measured here. Of
two sweeps (two schedulers) one claims, the other finds the row silent and emits nothing; the
event id is over (ICCID, quiet since), so a crash between emit and commit re-emits the same id.
The next SMS ends the silence (``consumers/silence.py``).
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import structlog

from events.sim import SimInboundSilent
from infra.bus import Bus
from infra.settings import SilenceSettings

PRODUCER = "simfleet/scheduler"
BATCH = 500
REGISTERED = 3  # Skyline port status: SIM registered on the network
CANDIDATES = """
SELECT s.iccid, s.reseller_id, s.current_number,
       greatest(n.verified_at, a.last_sms_at) AS quiet_since,
       coalesce(o.after_s, $2::float8) AS after_s
FROM sims s
JOIN sim_numbers n ON n.iccid = s.iccid AND n.e164 = s.current_number AND n.valid_to IS NULL
LEFT JOIN sim_silence a ON a.iccid = s.iccid
LEFT JOIN unnest($3::text[], $4::float8[]) AS o (reseller_id, after_s)
    ON o.reseller_id = s.reseller_id
WHERE s.status = 'active' AND s.number_status = 'verified' AND n.verified_at IS NOT NULL
  AND a.state IS DISTINCT FROM 'silent'
  AND EXISTS (SELECT 1 FROM gateway_ports gp WHERE gp.iccid = s.iccid AND gp.status_code = $5)
  AND greatest(n.verified_at, a.last_sms_at)
      <= $1::timestamptz - make_interval(secs => coalesce(o.after_s, $2::float8))
ORDER BY s.iccid
"""
CLAIM = """
INSERT INTO sim_silence (iccid, state, silent_since, silent_event_id, updated_at)
SELECT i, 'silent', q, e, $4 FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS x(i, q, e)
ON CONFLICT (iccid) DO UPDATE
SET state = 'silent', silent_since = EXCLUDED.silent_since,
    silent_event_id = EXCLUDED.silent_event_id, resumed_at = NULL,
    updated_at = EXCLUDED.updated_at
WHERE sim_silence.state <> 'silent'
  AND (sim_silence.last_sms_at IS NULL OR sim_silence.last_sms_at <= EXCLUDED.silent_since)
RETURNING silent_event_id
"""
log = structlog.get_logger("simfleet.scheduler")


async def announce_silent(
    pool: asyncpg.Pool, bus: Bus, now: datetime, settings: SilenceSettings
) -> list[SimInboundSilent]:
    """Every online SIM quiet past its threshold and not yet announced → sim.inbound_silent."""
    overrides = sorted(settings.reseller_after_s.items())
    rows = await pool.fetch(
        CANDIDATES, now, settings.after_s, [r for r, _ in overrides], [s for _, s in overrides],
        REGISTERED,
    )  # fmt: skip
    events = [silent_event(r, now) for r in rows]
    announced: list[SimInboundSilent] = []
    for start in range(0, len(events), BATCH):
        chunk = events[start : start + BATCH]
        async with pool.acquire() as conn, conn.transaction():
            won = await conn.fetch(
                CLAIM,
                [e.data.iccid for e in chunk],
                [e.data.silent_since for e in chunk],
                [e.id for e in chunk],
                now,
            )
            ours = {r["silent_event_id"] for r in won}
            mine = [e for e in chunk if e.id in ours]
            await bus.emit_many(mine)  # inside the transaction: see the module docstring
        announced += mine
    if announced:
        log.info("sims_inbound_silent", count=len(announced))
    return announced


def silent_event(row: asyncpg.Record, now: datetime) -> SimInboundSilent:
    return SimInboundSilent.create(
        producer=PRODUCER, time=now, iccid=row["iccid"], number=row["current_number"],
        reseller_id=row["reseller_id"], silent_since=row["quiet_since"],
        threshold_s=row["after_s"],
    )  # fmt: skip
