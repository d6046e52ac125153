"""The ``dev-status`` and ``port-status`` pushes (EXTERNAL_APIS §1.3): the gateway's ports, each
with its ICCID, number and registration state, as one ``gateway.status_reported``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from events.gateway import GatewayStatusReported, PortStatus
from producers.skyline.parsed_push import PRODUCER, ParsedPush, normalize_mac
from producers.skyline.push_fields import lenient_iccid, lenient_number
from producers.skyline.wire import DevStatusPush, PortStatusPush, PortStatusRow


def dev_status(push: DevStatusPush, gateway_id: str, now: datetime, host: str | None) -> ParsedPush:
    return _status(
        push.mac,
        gateway_id,
        push.status,
        now,
        host=host,
        seq=push.seq,
        max_ports=push.max_ports,
        max_slots=push.max_slots,
    )


def port_status(
    push: PortStatusPush, gateway_id: str, now: datetime, host: str | None
) -> ParsedPush:
    return _status(
        push.mac, gateway_id, [push], now, host=host, seq=None, max_ports=None, max_slots=None
    )


def _status(
    mac: str | None,
    gateway_id: str,
    rows: Sequence[PortStatusRow],
    now: datetime,
    *,
    host: str | None,
    seq: int | None,
    max_ports: int | None,
    max_slots: int | None,
) -> ParsedPush:
    ports = [
        PortStatus(
            port=row.port.strip(),
            status_code=row.st,
            iccid=lenient_iccid(row.iccid),
            imsi=row.imsi or None,
            number=lenient_number(row.sn),
        )
        for row in rows
    ]
    event = GatewayStatusReported.create(
        producer=PRODUCER,
        time=now,
        gateway_id=normalize_mac(mac) or gateway_id,
        ports=ports,
        seq=seq,
        max_ports=max_ports,
        max_slots=max_slots,
        reported_at=now,
        host=host,
    )
    return ParsedPush(statuses=(event,))
