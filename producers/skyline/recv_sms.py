"""The ``recv-sms`` push (EXTERNAL_APIS §1.1): rows of received SMS (flag 0) and of delivery
reports for SMS the gateway sent (flag 1). Pure parsing; a bad row rejects the whole push."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from events.sms import SmsDeliveryReported, SmsReceived
from producers.skyline.content import decode_content, scts_time
from producers.skyline.parsed_push import PRODUCER, ParsedPush, sms_event, sms_push
from producers.skyline.push_fields import (
    PushRejected,
    iccid_of,
    lenient_number,
    optional_string_of,
    port_of,
    receiver_of,
    sender_of,
    short_repr,
    string_of,
    unix_time_of,
)
from producers.skyline.wire import RecvSmsPush


def recv_sms(push: RecvSmsPush, gateway_id: str, now: datetime, host: str | None) -> ParsedPush:
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
    return sms_push(sms, reports=tuple(reports))


def _sms_row(
    row: list[int | str | None], where: str, gateway_id: str, now: datetime, host: str | None
) -> tuple[SmsReceived, bool]:
    _, port, stamp, sender, to, content = row[:6]
    iccid, imsi, inbox_id = [*row[6:9], None, None, None][:3]
    text = decode_content(string_of(content, f"{where}: content"))
    return sms_event(
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
