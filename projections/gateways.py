"""Gateways: ``gateway.status_reported`` → ``gateways``, ``gateway_ports``.

Reads topic ``gateway.status``. A port row keeps the newest report only, so a late or replayed
older report never overwrites a newer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from events.gateway import GatewayStatusReported, PortStatus
from events.topics import GATEWAY_STATUS, Topic
from projections.runner import Record

UPSERT_GATEWAYS = """
INSERT INTO gateways (gateway_id, mac_address, total_ports, last_seen_at)
SELECT g, m, p, t FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[]) AS x(g, m, p, t)
ON CONFLICT (gateway_id) DO UPDATE
SET total_ports = coalesce(EXCLUDED.total_ports, gateways.total_ports),
    last_seen_at = GREATEST(gateways.last_seen_at, EXCLUDED.last_seen_at)
"""
UPSERT_PORTS = """
INSERT INTO gateway_ports (gateway_id, port, status_code, iccid, imsi, number, updated_at)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
ON CONFLICT (gateway_id, port) DO UPDATE
SET status_code = EXCLUDED.status_code, iccid = EXCLUDED.iccid, imsi = EXCLUDED.imsi,
    number = EXCLUDED.number, updated_at = EXCLUDED.updated_at
WHERE gateway_ports.updated_at <= EXCLUDED.updated_at
"""
MAC = 17  # "00-30-f1-01-02-03"


class GatewaysProjection:
    name = "gateways"
    topics: tuple[Topic, ...] = (GATEWAY_STATUS,)
    tables: tuple[str, ...] = ("gateways", "gateway_ports")

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        reports = [r.event for r in records if isinstance(r.event, GatewayStatusReported)]
        newest: dict[str, GatewayStatusReported] = {}
        ports: dict[tuple[str, str], tuple[PortStatus, datetime]] = {}
        for e in reports:
            d = e.data
            if d.gateway_id not in newest or newest[d.gateway_id].data.reported_at < d.reported_at:
                newest[d.gateway_id] = e
            for p in d.ports:
                key = (d.gateway_id, p.port)
                if key not in ports or ports[key][1] <= d.reported_at:
                    ports[key] = (p, d.reported_at)
        if not newest:
            return
        gateways = [e.data for e in newest.values()]
        await conn.execute(
            UPSERT_GATEWAYS,
            [g.gateway_id for g in gateways],
            [g.gateway_id if len(g.gateway_id) == MAC else None for g in gateways],
            [g.max_ports for g in gateways],
            [g.reported_at for g in gateways],
        )
        if ports:
            await conn.execute(
                UPSERT_PORTS,
                [g for g, _ in ports],
                [p.port for p, _ in ports.values()],
                [p.status_code for p, _ in ports.values()],
                [p.iccid for p, _ in ports.values()],
                [p.imsi for p, _ in ports.values()],
                [p.number for p, _ in ports.values()],
                [at for _, at in ports.values()],
            )
