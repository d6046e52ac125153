"""Read-side lookups of the webhook flow: an event's SIM, reseller and endpoints; signing targets.

The SIM of an SMS is found as ``inbound_sms_resolved`` finds it (the ICCID the gateway
reported, else the SIM that had the receiving number at that time, else the SIM last seen in
the gateway port) and, for an SMS younger than the projections, the SIM whose current number
it is. A SIM's reseller: the operator's assignment (``reseller_sims``), else ``sims``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from consumers.webhooks.rules import NumberLeft, SimFacts, SourceEvent
from events.sms import SmsReceived
from infra.webhook_sender import EndpointTarget
from infra.webhook_signing import SecretBox

RESOLVE_TARGETS = """
WITH src AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                         $6::text[]) AS s(message_id, iccid, to_number, at, gateway_id, port)
), sim AS (
    SELECT s.message_id, coalesce(s.iccid, n.iccid, gp.iccid, cur.iccid) AS iccid
    FROM src s
    LEFT JOIN LATERAL (
        SELECT sn.iccid FROM sim_numbers sn
        WHERE s.iccid IS NULL AND sn.e164 = s.to_number AND sn.valid_from <= s.at
          AND (sn.valid_to IS NULL OR sn.valid_to > s.at)
        ORDER BY sn.valid_from DESC LIMIT 1
    ) n ON true
    LEFT JOIN gateway_ports gp ON s.iccid IS NULL AND n.iccid IS NULL
        AND gp.gateway_id = s.gateway_id AND gp.port = s.port
    LEFT JOIN LATERAL (
        SELECT c.iccid FROM sims c
        WHERE s.iccid IS NULL AND n.iccid IS NULL AND gp.iccid IS NULL
          AND c.current_number = s.to_number
        ORDER BY c.updated_at DESC LIMIT 1
    ) cur ON true
)
SELECT sim.message_id, sim.iccid, si.id AS sim_id, si.current_number,
       si.mobility_subscription_id, w.reseller_id, w.endpoint_id, w.event_types, w.enabled
FROM sim
LEFT JOIN sims si ON si.iccid = sim.iccid
LEFT JOIN reseller_sims rs ON rs.iccid = sim.iccid
JOIN reseller_webhooks w ON w.reseller_id = coalesce(rs.reseller_id, si.reseller_id)
ORDER BY sim.message_id, w.endpoint_id
"""
# whom a number left: the reseller named, else the SIM's
RESOLVE_LEFT = """
SELECT l.message_id, l.iccid, si.id AS sim_id, si.mobility_subscription_id,
       w.reseller_id, w.endpoint_id, w.event_types, w.enabled
FROM unnest($1::text[], $2::text[], $3::text[]) AS l(message_id, iccid, reseller_id)
LEFT JOIN sims si ON si.iccid = l.iccid
LEFT JOIN reseller_sims rs ON rs.iccid = l.iccid
JOIN reseller_webhooks w ON w.reseller_id = coalesce(l.reseller_id, rs.reseller_id, si.reseller_id)
ORDER BY l.message_id, w.endpoint_id
"""
SELECT_ENDPOINTS = """
SELECT endpoint_id, url, sealed_secret, previous_sealed_secret, previous_valid_until, enabled
FROM reseller_webhooks WHERE endpoint_id = ANY($1::text[])
"""


@dataclass(frozen=True)
class Subscriber:
    reseller_id: str
    endpoint_id: str
    event_types: tuple[str, ...]
    enabled: bool = True


@dataclass
class Targets:
    """What one source event needs: its SIM's facts and the reseller's endpoints (disabled ones
    too: their deliveries are kept unattempted, to be sent if the endpoint is re-enabled)."""

    sim: SimFacts
    subscribers: list[Subscriber] = field(default_factory=list)


def _lookup_key(
    event: SourceEvent,
) -> tuple[str | None, str | None, datetime, str | None, str | None]:
    if isinstance(event, SmsReceived):
        d = event.data
        return d.iccid, d.to, d.received_at, d.gateway_id, d.port
    return event.data.iccid, None, event.time, None, None


async def resolve_targets(pool: asyncpg.Pool, events: Sequence[SourceEvent]) -> dict[str, Targets]:
    """Event id → targets, for the events whose SIM belongs to a reseller with endpoints."""
    if not events:
        return {}
    keys = [_lookup_key(e) for e in events]
    rows = await pool.fetch(
        RESOLVE_TARGETS, [e.id for e in events], *(list(col) for col in zip(*keys, strict=True))
    )
    found: dict[str, Targets] = {}
    for r in rows:
        sim = SimFacts(r["iccid"], r["sim_id"], r["current_number"], r["mobility_subscription_id"])
        targets = found.setdefault(r["message_id"], Targets(sim))
        targets.subscribers.append(
            Subscriber(r["reseller_id"], r["endpoint_id"], tuple(r["event_types"]), r["enabled"])
        )
    return found


async def resolve_left(pool: asyncpg.Pool, left: Sequence[NumberLeft]) -> dict[str, Targets]:
    """``number.offline`` message id → targets: the endpoints of the reseller the number left."""
    if not left:
        return {}
    rows = await pool.fetch(
        RESOLVE_LEFT, [n.message_id for n in left], [n.iccid for n in left],
        [n.reseller_id for n in left],
    )  # fmt: skip
    found: dict[str, Targets] = {}
    for r in rows:
        sim = SimFacts(r["iccid"], r["sim_id"], None, r["mobility_subscription_id"])
        targets = found.setdefault(r["message_id"], Targets(sim))
        targets.subscribers.append(
            Subscriber(r["reseller_id"], r["endpoint_id"], tuple(r["event_types"]), r["enabled"])
        )
    return found


@dataclass(frozen=True)
class Endpoint:
    target: EndpointTarget
    enabled: bool


class EndpointDirectory:
    """Signing targets by endpoint id, unsealed once and cached for ``ttl_s``.

    Re-read at that pace so a rotation, a URL change or a disable reaches running deliveries.
    One read per endpoint at a time: a backlog starts thousands of deliveries to the same few
    endpoints at once, and each would otherwise query Postgres and unseal the secret itself.
    """

    def __init__(self, pool: asyncpg.Pool, box: SecretBox, ttl_s: float) -> None:
        self._pool = pool
        self._box = box
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Endpoint | None]] = {}
        self._reading: dict[str, asyncio.Future[Endpoint | None]] = {}

    def cached(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint if read less than ``ttl_s`` ago (None: not known, or read again by
        ``get``)."""
        fresh = self._fresh(endpoint_id)
        return None if fresh is None else fresh[1]

    async def get(self, endpoint_id: str, now: datetime) -> Endpoint | None:
        if (fresh := self._fresh(endpoint_id)) is not None:
            return fresh[1]  # None too: an endpoint read as unknown is not read again meanwhile
        reading = self._reading.get(endpoint_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read(endpoint_id, now))
            self._reading[endpoint_id] = reading
            reading.add_done_callback(lambda done: self._read_done(endpoint_id, done))
        # shielded: one waiter cancelled (its delivery ended) must not fail the others' read
        return await asyncio.shield(reading)

    def _fresh(self, endpoint_id: str) -> tuple[float, Endpoint | None] | None:
        """The cache entry if read less than ``ttl_s`` ago."""
        entry = self._cache.get(endpoint_id)
        if entry is not None and time.monotonic() - entry[0] < self._ttl_s:
            return entry
        return None

    async def _read(self, endpoint_id: str, now: datetime) -> Endpoint | None:
        read_at = time.monotonic()
        rows = await self._pool.fetch(SELECT_ENDPOINTS, [endpoint_id])
        endpoint = self._endpoint(rows[0], now) if rows else None
        if self._reading.get(endpoint_id) is asyncio.current_task():
            self._cache[endpoint_id] = (read_at, endpoint)
        return endpoint

    def _read_done(self, endpoint_id: str, done: asyncio.Future[Endpoint | None]) -> None:
        if self._reading.get(endpoint_id) is done:
            del self._reading[endpoint_id]
        if not done.cancelled():
            done.exception()  # retrieved here too: every waiter may have gone meanwhile

    def forget(self, endpoint_id: str) -> None:
        self._cache.pop(endpoint_id, None)
        # a read under way may predate what made us forget: the next get reads afresh
        self._reading.pop(endpoint_id, None)

    def _endpoint(self, row: asyncpg.Record, now: datetime) -> Endpoint:
        secrets = [self._box.unseal(row["sealed_secret"])]
        previous, until = row["previous_sealed_secret"], row["previous_valid_until"]
        if previous and until is not None and now < until:
            secrets.append(self._box.unseal(previous))  # newest first: both sign
        target = EndpointTarget(row["endpoint_id"], row["url"], tuple(secrets))
        return Endpoint(target, row["enabled"])
