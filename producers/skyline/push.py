"""Skyline gateway pushes → events. Pure parsing, no I/O (wire formats: EXTERNAL_APIS §1.1, §1.3).

- ``parse_json_push``: the gateway's JSON push — ``recv-sms`` rows (SMS and delivery reports),
  ``dev-status`` and ``port-status``.
- ``parse_http_push``: the "SMS to HTTP" text push (query parameters + header block + text).
- ``parse_simple_push``: simfleet's generic JSON format for senders other than Skyline.

Every problem raises one ``PushRejected(reason, status_code)``: 400 when the body cannot be read
at all (not JSON, not UTF-8, empty), 422 when it can be read but does not fit the format. A push
is accepted or rejected whole; the bridge keeps rejected pushes verbatim on ``gateway.rejected``.

Ids are deterministic (see ``events.sms``), so a push must not depend on the time it arrives when
it carries its own: the row's unix time, else the ``SCTS`` header line, and only then ``now``.
SMS dated ``now`` are named in ``ParsedPush.arrival_timed``: the bridge gives a gateway's retry
of one the time of its first arrival (``producers.skyline.arrivals``), so a retry is the same SMS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from events.envelope import Event
from events.gateway import GatewayStatusReported, PortStatus
from events.sms import SmsDeliveryReported, SmsReceived
from producers.skyline.content import decode_content, scts_time
from producers.skyline.push_fields import (
    MALFORMED,
    MAX_PUSH_ITEMS,
    PushRejected,
    iccid_of,
    lenient_iccid,
    lenient_number,
    load_json,
    optional_string_of,
    port_of,
    receiver_of,
    sender_of,
    short_repr,
    sms_body_of,
    string_of,
    unix_time_of,
    validated,
    validation_reason,
)
from producers.skyline.wire import (
    DevStatusPush,
    PortStatusPush,
    PortStatusRow,
    RecvSmsPush,
    SimpleSms,
)

PRODUCER = "simfleet/gateway-bridge"
UNKNOWN_GATEWAY = "unknown"


@dataclass(frozen=True)
class ParsedPush:
    sms: tuple[SmsReceived, ...] = ()
    reports: tuple[SmsDeliveryReported, ...] = ()
    statuses: tuple[GatewayStatusReported, ...] = ()
    arrival_timed: frozenset[str] = frozenset()  # ids of SMS dated by arrival: no time of their own

    @property
    def events(self) -> tuple[Event, ...]:
        return (*self.sms, *self.reports, *self.statuses)


# --- entry points ----------------------------------------------------------------------------


def parse_json_push(
    body: bytes | Mapping[str, Any], *, gateway_id: str, now: datetime, host: str | None = None
) -> ParsedPush:
    """``gateway_id`` identifies SMS rows (the JSON push does not name its gateway);
    a status push's own ``mac`` wins over it. ``host``: the address the push came from."""
    push = load_json(body)
    if not isinstance(push, Mapping):
        raise PushRejected("a gateway push is a JSON object with a 'type'")
    kind = push.get("type")
    if kind == "recv-sms":
        return _recv_sms(validated(RecvSmsPush, push), gateway_id, now, host)
    if kind == "dev-status":
        return _dev_status(validated(DevStatusPush, push), gateway_id, now, host)
    if kind == "port-status":
        return _port_status(validated(PortStatusPush, push), gateway_id, now, host)
    if kind is None:
        raise PushRejected("missing 'type' (recv-sms, dev-status or port-status)")
    raise PushRejected(
        f"unsupported push type {short_repr(kind)} (recv-sms, dev-status, port-status)"
    )


def parse_http_push(
    query: Mapping[str, str], body: bytes, *, now: datetime, host: str | None = None
) -> ParsedPush:
    """The "SMS to HTTP" push: ``port``, ``sender``, ``mac``, ``iccid`` in the query; the body is
    header lines (``Sender:``, ``Receiver:``, ``SCTS:`` …), a blank line, then the text."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PushRejected("body is not UTF-8 text", MALFORMED) from err
    content = decode_content(text)
    sender = query.get("sender") or content.headers.get("sender")
    if not sender:
        raise PushRejected("missing sender: query 'sender' or a 'Sender:' header line")
    sms = _sms(
        gateway_id=gateway_id_from(query),
        port=query.get("port") or content.headers.get("receiver") or None,
        sender=sender_of(sender, "sender"),
        to=receiver_of(query.get("to"), "to"),
        iccid=iccid_of(query.get("iccid"), "iccid"),
        imsi=query.get("imsi") or None,
        body=content.text,
        received_at=scts_time(content.headers.get("scts")),
        gateway_host=host,
        now=now,
    )
    return _sms_push([sms])


def parse_simple_push(
    body: bytes | Mapping[str, Any] | Sequence[Any],
    *,
    now: datetime,
    gateway_id: str = UNKNOWN_GATEWAY,
) -> ParsedPush:
    """``{"to", "from", "body", "received_at", "gateway_id", "port"}``, one object or a list."""
    loaded = load_json(body)
    items = loaded if isinstance(loaded, list) else [loaded]
    if len(items) > MAX_PUSH_ITEMS:
        raise PushRejected(f"{len(items)} SMS in one push; at most {MAX_PUSH_ITEMS}")
    events: list[tuple[SmsReceived, bool]] = []
    for n, item in enumerate(items, 1):
        where = f"item {n}: " if isinstance(loaded, list) else ""
        if not isinstance(item, Mapping):
            raise PushRejected(f"{where}an SMS is a JSON object")
        sms = validated(SimpleSms, item, where)
        events.append(
            _sms(
                gateway_id=sms.gateway_id or gateway_id,
                port=sms.port,
                sender=sender_of(sms.sender, f"{where}from"),
                to=receiver_of(sms.to, f"{where}to"),
                iccid=iccid_of(sms.iccid, f"{where}iccid"),
                imsi=None,
                body=sms.body,
                where=where,
                received_at=sms.received_at,
                now=now,
            )
        )
    return _sms_push(events)


def gateway_id_from(query: Mapping[str, str]) -> str:
    """The gateway's MAC when it says it, else the ``gateway_id`` set in its push URL."""
    return normalize_mac(query.get("mac")) or query.get("gateway_id", "").strip() or UNKNOWN_GATEWAY


def normalize_mac(raw: object) -> str | None:
    """``00:30:F1:01:02:03`` and ``00-30-f1-01-02-03`` are one gateway: lower-case, dashes."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    digits = re.sub(r"[-:.]", "", raw.strip())
    if re.fullmatch(r"[0-9A-Fa-f]{12}", digits):
        return "-".join(digits[i : i + 2] for i in range(0, 12, 2)).lower()
    return raw.strip()


# --- recv-sms ----------------------------------------------------------------------------------


def _recv_sms(push: RecvSmsPush, gateway_id: str, now: datetime, host: str | None) -> ParsedPush:
    sms: list[tuple[SmsReceived, bool]] = []
    reports: list[SmsDeliveryReported] = []
    for n, row in enumerate(push.sms, 1):
        where = f"sms row {n}"
        if len(row) < 6:
            raise PushRejected(f"{where}: expected [flag, port, time, from, to, content, ...]")
        flag = row[0]
        if isinstance(flag, bool):  # JSON true == 1 in Python; a gateway never writes it
            raise PushRejected(f"{where}: flag must be 0 or 1, got {short_repr(flag)}")
        if flag == 0:
            sms.append(_sms_row(row, where, gateway_id, now, host))
        elif flag == 1:
            reports.append(_report_row(row, where, gateway_id, now))
        else:
            raise PushRejected(f"{where}: unknown flag {short_repr(flag)} (0 = SMS, 1 = report)")
    return _sms_push(sms, reports=tuple(reports))


def _sms_row(
    row: list[int | str | None], where: str, gateway_id: str, now: datetime, host: str | None
) -> tuple[SmsReceived, bool]:
    _, port, stamp, sender, to, content = row[:6]
    iccid, imsi, inbox_id = [*row[6:9], None, None, None][:3]
    text = decode_content(string_of(content, f"{where}: content"))
    return _sms(
        gateway_id=gateway_id,
        port=port_of(port, where),
        sender=sender_of(sender, f"{where}: from"),
        to=receiver_of(to, f"{where}: to"),
        iccid=iccid_of(iccid, f"{where}: iccid"),
        imsi=optional_string_of(imsi, f"{where}: imsi"),
        gateway_sms_id=None if inbox_id in (None, "") else str(inbox_id),
        body=text.text,
        where=f"{where}: ",
        received_at=unix_time_of(stamp, where) or scts_time(text.headers.get("scts")),
        gateway_host=host,
        now=now,
    )


def _report_row(row: list[Any], where: str, gateway_id: str, now: datetime) -> SmsDeliveryReported:
    # a delivery report: from = the SMSC, to = the original recipient, content = "<code> <scts>"
    _, port, stamp, smsc, recipient, content = row[:6]
    raw = decode_content(string_of(content, f"{where}: content")).text.strip()
    code = re.match(r"(\d+)(?:\s+(\d+))?", raw)
    if code is None:
        raise PushRejected(f"{where}: a delivery report's content starts with its status code")
    to = string_of(recipient, f"{where}: to").strip()
    if not to:
        raise PushRejected(f"{where}: a delivery report names its recipient in 'to'")
    return SmsDeliveryReported.create(
        producer=PRODUCER,
        time=now,
        gateway_id=gateway_id,
        port=port_of(port, where),
        smsc=string_of(smsc, f"{where}: from"),
        recipient=lenient_number(to) or to,
        status_code=int(code.group(1)),
        raw=raw,
        reported_at=unix_time_of(stamp, where) or scts_time(code.group(2)) or now,
    )


def _sms(
    *, now: datetime, body: str, received_at: datetime | None, where: str = "", **fields: Any
) -> tuple[SmsReceived, bool]:
    """The event, and whether it is dated by arrival (the push said no time of its own)."""
    try:
        event = SmsReceived.create(
            producer=PRODUCER,
            time=now,
            body=sms_body_of(body, where),
            received_at=received_at or now,
            **fields,
        )
    except ValidationError as err:  # every field was checked above; this is the last guard
        raise PushRejected(validation_reason(err)) from err
    return event, received_at is None


def _sms_push(
    sms: Sequence[tuple[SmsReceived, bool]], reports: tuple[SmsDeliveryReported, ...] = ()
) -> ParsedPush:
    return ParsedPush(
        sms=tuple(event for event, _ in sms),
        reports=reports,
        arrival_timed=frozenset(event.id for event, by_arrival in sms if by_arrival),
    )


# --- dev-status / port-status -----------------------------------------------------------------


def _dev_status(
    push: DevStatusPush, gateway_id: str, now: datetime, host: str | None
) -> ParsedPush:
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


def _port_status(
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
