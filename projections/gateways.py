"""Gateways: ``gateway.status_reported`` and ``sms.received`` → ``gateways``, ``gateway_ports``.

Reads topics ``gateway.status`` and ``sms.inbound``. Where a SIM is, is learnt from every push
that says it: status pushes (every port), and each SMS push that names its receiving port and
ICCID (the "SMS to HTTP" push and recv-sms rows of newer firmware) — a SIM that just received an
SMS is registered in that port. A port row keeps the newest report only, so a late or replayed
older report never overwrites a newer one. A gateway's host is the address it last pushed from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar, assert_never, cast

import asyncpg

from events.gateway import GatewayStatusReported
from events.sms import SmsDeliveryReported, SmsInboundEvent, SmsReceived
from events.topics import GATEWAY_STATUS, SMS_INBOUND, Topic
from projections.batches import Record

UPSERT_GATEWAYS = """
INSERT INTO gateways (gateway_id, mac_address, total_ports, host, last_seen_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::timestamptz[])
ON CONFLICT (gateway_id) DO UPDATE
SET total_ports = coalesce(EXCLUDED.total_ports, gateways.total_ports),
    host = CASE WHEN EXCLUDED.host IS NOT NULL
                 AND EXCLUDED.last_seen_at >= coalesce(gateways.last_seen_at, EXCLUDED.last_seen_at)
                THEN EXCLUDED.host ELSE gateways.host END,
    last_seen_at = GREATEST(gateways.last_seen_at, EXCLUDED.last_seen_at)
"""
# an SMS push names no number when the gateway does not know it: the reported one stays
UPSERT_PORTS = """
INSERT INTO gateway_ports (gateway_id, port, status_code, iccid, imsi, number, updated_at)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
ON CONFLICT (gateway_id, port) DO UPDATE
SET status_code = EXCLUDED.status_code, iccid = EXCLUDED.iccid,
    imsi = coalesce(EXCLUDED.imsi, CASE WHEN gateway_ports.iccid = EXCLUDED.iccid
                                        THEN gateway_ports.imsi END),
    number = coalesce(EXCLUDED.number, CASE WHEN gateway_ports.iccid = EXCLUDED.iccid
                                            THEN gateway_ports.number END),
    updated_at = EXCLUDED.updated_at
WHERE gateway_ports.updated_at <= EXCLUDED.updated_at
"""
MAC = 17  # "00-30-f1-01-02-03"
REGISTERED = 3
UNNAMED_GATEWAY = "unknown"
K = TypeVar("K")


@dataclass(frozen=True)
class Seen:
    """One gateway or port as the newest push in a batch reported it."""

    at: datetime
    values: tuple[object, ...]


GatewayTopicsEvent = GatewayStatusReported | SmsInboundEvent


@dataclass
class Sightings:
    """The gateways and ports a batch reported, the newest report of each."""

    gateways: dict[str, Seen] = field(default_factory=dict)
    ports: dict[tuple[str, str], Seen] = field(default_factory=dict)

    def add(self, event: GatewayTopicsEvent) -> None:
        """Exhaustive: a new type on either topic fails the type check here."""
        match event:
            case GatewayStatusReported(data=d):
                _gateway(self.gateways, d.gateway_id, d.reported_at, d.max_ports, d.host)
                for p in d.ports:
                    values = (p.status_code, p.iccid, p.imsi, p.number)
                    _port(self.ports, (d.gateway_id, p.port), d.reported_at, *values)
            case SmsReceived(data=s) if s.gateway_id != UNNAMED_GATEWAY:
                _gateway(self.gateways, s.gateway_id, s.received_at, None, s.gateway_host)
                if s.port and s.iccid:
                    values = (REGISTERED, s.iccid, s.imsi, s.to)
                    _port(self.ports, (s.gateway_id, s.port), s.received_at, *values)
            case SmsReceived() | SmsDeliveryReported():
                pass  # an SMS from a gateway that did not name itself; a report names no port
            case _:
                assert_never(event)


def sightings(events: Iterable[GatewayTopicsEvent]) -> Sightings:
    seen = Sightings()
    for event in events:
        seen.add(event)
    return seen


class GatewaysProjection:
    name = "gateways"
    topics: tuple[Topic, ...] = (GATEWAY_STATUS, SMS_INBOUND)
    tables: tuple[str, ...] = ("gateways", "gateway_ports")

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        # the runner decodes each topic with its own decoder: every event is of its union
        seen = sightings(cast(GatewayTopicsEvent, r.event) for r in records)
        gateways, ports = seen.gateways, seen.ports
        if not gateways:
            return
        ids = list(gateways)
        await conn.execute(
            UPSERT_GATEWAYS,
            ids,
            [g if len(g) == MAC else None for g in ids],
            [gateways[g].values[0] for g in ids],
            [gateways[g].values[1] for g in ids],
            [gateways[g].at for g in ids],
        )
        if ports:
            keys = list(ports)
            await conn.execute(
                UPSERT_PORTS,
                [g for g, _ in keys],
                [p for _, p in keys],
                *([ports[k].values[n] for k in keys] for n in range(4)),
                [ports[k].at for k in keys],
            )


def _port(found: dict[K, Seen], key: K, at: datetime, *values: object) -> None:
    """The newest report of a port wins whole (an emptied port has no ICCID any more)."""
    if key not in found or found[key].at <= at:
        found[key] = Seen(at, values)


def _gateway(found: dict[K, Seen], key: K, at: datetime, *values: object) -> None:
    """The newest report of a gateway wins value by value: a push that does not say one (an
    SMS push says no port count) keeps the newest that did."""
    if key not in found:
        found[key] = Seen(at, values)
        return
    old = found[key]
    newer, older = (values, old.values) if old.at <= at else (old.values, values)
    merged = tuple(o if n is None else n for n, o in zip(newer, older, strict=True))
    found[key] = Seen(max(at, old.at), merged)
