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

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from events.sms import SmsReceived
from producers.skyline.content import decode_content, scts_time
from producers.skyline.parsed_push import (
    UNKNOWN_GATEWAY,
    ParsedPush,
    gateway_id_from,
    sms_event,
    sms_push,
)
from producers.skyline.port_status import dev_status, port_status
from producers.skyline.push_fields import (
    MALFORMED,
    MAX_PUSH_ITEMS,
    PushRejected,
    iccid_of,
    load_json,
    receiver_of,
    sender_of,
    short_repr,
    validated,
)
from producers.skyline.recv_sms import recv_sms
from producers.skyline.wire import DevStatusPush, PortStatusPush, RecvSmsPush, SimpleSms

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
        return recv_sms(validated(RecvSmsPush, push), gateway_id, now, host)
    if kind == "dev-status":
        return dev_status(validated(DevStatusPush, push), gateway_id, now, host)
    if kind == "port-status":
        return port_status(validated(PortStatusPush, push), gateway_id, now, host)
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
    sms = sms_event(
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
    return sms_push([sms])


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
            sms_event(
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
    return sms_push(events)
