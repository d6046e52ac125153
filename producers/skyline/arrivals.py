"""Where and when an SMS arrived: settled by the gateway bridge before it publishes.

- **The receiving number.** Gateways often leave ``to`` empty: the "SMS to HTTP" push names only
  the receiving SIM (``iccid``) and port, and recv-sms rows carry the same (EXTERNAL_APIS §1.1).
  That SIM's current number is the ``to`` — so every SMS, whichever format pushed it, is keyed by
  its receiving number on ``sms.inbound`` and one SIM's SMS stay on one partition, in order. The
  SIM is found by ICCID in ``sims``, else as the SIM in the port the SMS arrived on
  (``gateway_ports``, whose reported number is the last resort). A SIM nobody knows yet keeps
  ``to`` empty (the key is then its ICCID, else ``<gateway>:<port>``).
- **The time of an SMS that has none** (a text push without ``SCTS``, a recv-sms row with time 0):
  it is dated by its first arrival, kept in ``sms_arrivals`` per fingerprint (gateway, port,
  SIM, sender, receiver, text); the same push again within ``SIMFLEET_BRIDGE_RETRY_WINDOW_S`` —
  a gateway retrying because it saw no 200 — gets that first time, hence the same event id, and
  is one SMS in every table and webhook. Two identical such SMS inside the window are one too:
  without a time of their own nothing tells them apart.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from events.envelope import canonical_id
from events.sms import SmsReceived
from producers.skyline.parsed_push import ParsedPush

RECEIVING_NUMBER = """
SELECT coalesce(
    (SELECT current_number FROM sims WHERE iccid = $1),
    (SELECT coalesce(s.current_number, gp.number) FROM gateway_ports gp
     LEFT JOIN sims s ON s.iccid = gp.iccid
     WHERE gp.gateway_id = $2 AND gp.port = $3 AND ($1::text IS NULL OR gp.iccid = $1))
)
"""
# the first arrival of a fingerprint, unless it is older than the window (then this one is new)
FIRST_ARRIVAL = """
INSERT INTO sms_arrivals AS a (fingerprint, received_at) VALUES ($1, $2)
ON CONFLICT (fingerprint) DO UPDATE
SET received_at = CASE WHEN a.received_at < $3 THEN EXCLUDED.received_at ELSE a.received_at END
RETURNING received_at
"""


def fingerprint(sms: SmsReceived) -> str:
    """The SMS as pushed, without the time the bridge gave it."""
    return canonical_id("sms.arrival", sms.data.model_dump(mode="json", exclude={"received_at"}))


class SmsArrivals:
    def __init__(self, pool: asyncpg.Pool, retry_window_s: float) -> None:
        self._pool, self._window = pool, timedelta(seconds=retry_window_s)

    async def settle(self, push: ParsedPush) -> ParsedPush:
        """The push with each SMS's time (retries: the first arrival's) and receiving number."""
        if not any(s.id in push.arrival_timed or s.data.to is None for s in push.sms):
            return push  # the common case: dated and addressed by the gateway, no round trip
        async with self._pool.acquire() as conn:
            settled = [
                await self._settle(conn, sms, sms.id in push.arrival_timed) for sms in push.sms
            ]
        return ParsedPush(sms=tuple(settled), reports=push.reports, statuses=push.statuses)

    async def _settle(
        self, conn: asyncpg.Connection, sms: SmsReceived, by_arrival: bool
    ) -> SmsReceived:
        d = sms.data
        changes: dict[str, object] = {}
        if by_arrival:
            first: datetime = await conn.fetchval(
                FIRST_ARRIVAL, fingerprint(sms), d.received_at, d.received_at - self._window
            )
            if first != d.received_at:
                changes["received_at"] = first
        if d.to is None:
            number = await conn.fetchval(RECEIVING_NUMBER, d.iccid, d.gateway_id, d.port)
            if number:
                changes["to"] = number
        if not changes:
            return sms
        fields = {**d.model_dump(), **changes}
        return SmsReceived.create(producer=sms.source, time=sms.time, **fields)
