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
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from events.envelope import Event
from events.gateway import GatewayStatusReported, PortStatus
from events.sms import SmsDeliveryReported, SmsReceived
from events.types import normalize_e164

_M = TypeVar("_M", bound=BaseModel)

PRODUCER = "simfleet/gateway-bridge"
UNKNOWN_GATEWAY = "unknown"
MALFORMED = 400
INVALID = 422


class PushRejected(ValueError):
    """The push cannot become events; ``reason`` is said to the gateway and kept with the payload."""

    def __init__(self, reason: str, status_code: int = INVALID) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


@dataclass(frozen=True)
class ParsedPush:
    sms: tuple[SmsReceived, ...] = ()
    reports: tuple[SmsDeliveryReported, ...] = ()
    statuses: tuple[GatewayStatusReported, ...] = ()

    @property
    def events(self) -> tuple[Event, ...]:
        return (*self.sms, *self.reports, *self.statuses)


# --- wire models (also the bridge's OpenAPI request bodies) --------------------------------


def _leading_int(value: object) -> object:
    # some firmware writes the port state as "3 OK" instead of 3
    if isinstance(value, str) and (match := re.match(r"\s*(\d+)", value)):
        return int(match.group(1))
    return value


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class PortStatusRow(_Wire):
    port: str = Field(description="port name: 1.01 (port.slot), 61A (port + slot letter)")
    st: Annotated[int, BeforeValidator(_leading_int)] = Field(
        description='port state, 3 = registered; "3 OK" is accepted too'
    )
    iccid: str | None = None
    imsi: str | None = None
    sn: str | None = Field(default=None, description="the SIM's own number, when configured")


class DevStatusPush(_Wire):
    """Periodic status of every port (``max-slot`` on real devices, ``max-slots`` in the manual)."""

    type: Literal["dev-status"]
    seq: int | None = None
    mac: str | None = None
    max_ports: int | None = Field(default=None, alias="max-ports")
    max_slots: int | None = Field(
        default=None, validation_alias=AliasChoices("max-slots", "max-slot")
    )
    status: list[PortStatusRow]


class PortStatusPush(PortStatusRow):
    """One port's status, pushed on every change."""

    type: Literal["port-status"]
    mac: str | None = None


class RecvSmsPush(_Wire):
    """Received SMS and delivery reports."""

    type: Literal["recv-sms"]
    sms_num: int | None = None
    sms: list[list[Any]] = Field(
        description="rows [flag, port, unix_seconds, from, to, content] + optional "
        "[iccid, imsi, extra]; flag 0 = SMS, 1 = delivery report; content = base64 of UTF-8 "
        "(header block, blank line, message) or plain text; unix_seconds 0 = now"
    )


class SimpleSms(BaseModel):
    """simfleet's generic inbound SMS (one object or a list)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    to: str | None = Field(default=None, description="receiving number")
    sender: str = Field(alias="from", description="originating number or alphanumeric id")
    body: str
    received_at: AwareDatetime | None = Field(
        default=None, description="ISO 8601 with offset, or unix seconds; missing = now"
    )
    gateway_id: str | None = None
    port: str | None = None
    iccid: str | None = None


WIRE_MODELS: tuple[type[BaseModel], ...] = (RecvSmsPush, DevStatusPush, PortStatusPush, SimpleSms)


# --- entry points ----------------------------------------------------------------------------


def parse_json_push(
    body: bytes | Mapping[str, Any], *, gateway_id: str, now: datetime
) -> ParsedPush:
    """``gateway_id`` identifies SMS rows (the JSON push does not name its gateway);
    a status push's own ``mac`` wins over it."""
    push = _load_json(body)
    if not isinstance(push, Mapping):
        raise PushRejected("a gateway push is a JSON object with a 'type'")
    kind = push.get("type")
    if kind == "recv-sms":
        return _recv_sms(_validated(RecvSmsPush, push), gateway_id, now)
    if kind == "dev-status":
        return _dev_status(_validated(DevStatusPush, push), gateway_id, now)
    if kind == "port-status":
        return _port_status(_validated(PortStatusPush, push), gateway_id, now)
    if kind is None:
        raise PushRejected("missing 'type' (recv-sms, dev-status or port-status)")
    raise PushRejected(f"unsupported push type {_short(kind)} (recv-sms, dev-status, port-status)")


def parse_http_push(query: Mapping[str, str], body: bytes, *, now: datetime) -> ParsedPush:
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
        iccid=_iccid(query.get("iccid"), "iccid"),
        imsi=query.get("imsi") or None,
        body=content.text,
        received_at=scts_time(content.headers.get("scts")) or now,
        now=now,
    )
    return ParsedPush(sms=(sms,))


def parse_simple_push(
    body: bytes | Mapping[str, Any] | Sequence[Any],
    *,
    now: datetime,
    gateway_id: str = UNKNOWN_GATEWAY,
) -> ParsedPush:
    """``{"to", "from", "body", "received_at", "gateway_id", "port"}``, one object or a list."""
    loaded = _load_json(body)
    items = loaded if isinstance(loaded, list) else [loaded]
    events = []
    for n, item in enumerate(items, 1):
        where = f"item {n}: " if isinstance(loaded, list) else ""
        if not isinstance(item, Mapping):
            raise PushRejected(f"{where}an SMS is a JSON object")
        sms = _validated(SimpleSms, item, where)
        events.append(
            _sms(
                gateway_id=sms.gateway_id or gateway_id,
                port=sms.port,
                sender=sender_of(sms.sender, f"{where}from"),
                to=receiver_of(sms.to, f"{where}to"),
                iccid=_iccid(sms.iccid, f"{where}iccid"),
                imsi=None,
                body=sms.body,
                received_at=sms.received_at or now,
                now=now,
            )
        )
    return ParsedPush(sms=tuple(events))


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


# --- content: base64 or plain, with or without the header block -------------------------------


@dataclass(frozen=True)
class Content:
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names, quotes stripped


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# one word or code as people type it ("STOP", "Ok12", "1234"); base64 mixes case at random
_PLAIN_TOKEN = re.compile(r"[A-Z]?[a-z]+\d*|[A-Z]+\d*|\d+")
_HEADER_LINE = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)[ \t]*:[ \t]?(.*)")
_KNOWN_HEADERS = frozenset({"sender", "receiver", "smsc", "scts", "slot"})
_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")
_ALLOWED_CONTROLS = frozenset("\r\n\t")


def decode_content(content: str) -> Content:
    """Base64 only when it is strict base64 of UTF-8 text. Plain text is often valid base64 too
    (``Ok12`` decodes to ``:Mv``), so: a decoded header block settles it; otherwise the decoded
    body must be clean text and the content must not read as a plain word or code."""
    decoded = _strict_base64_text(content)
    if decoded is not None:
        if (with_headers := split_header_block(decoded)) is not None:
            return with_headers
        if _clean_text(decoded) and not _PLAIN_TOKEN.fullmatch(content.strip()):
            return Content(decoded)
    return split_header_block(content) or Content(content)


def split_header_block(text: str) -> Content | None:
    """``Sender: …\\r\\nReceiver: "24.01"\\r\\n…\\r\\n\\r\\nmessage`` → headers + message, or None
    when the part before the first blank line is not a block of known header lines."""
    blank = _BLANK_LINE.search(text)
    if blank is None:
        return None
    headers: dict[str, str] = {}
    for line in text[: blank.start()].splitlines():
        match = _HEADER_LINE.fullmatch(line.strip())
        if match is None:
            return None
        headers[match.group(1).lower()] = match.group(2).strip().strip('"').strip()
    if not headers.keys() & _KNOWN_HEADERS:
        return None
    return Content(text[blank.end() :], headers)


def _strict_base64_text(content: str) -> str | None:
    candidate = content.strip()
    if not candidate or len(candidate) % 4 or not _BASE64.fullmatch(candidate):
        return None
    try:
        return base64.b64decode(candidate, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _clean_text(text: str) -> bool:
    """No control characters, private-use code points or replacement characters: decoded
    noise shows them; real messages (emoji with joiners included) do not."""
    return all(
        ch in _ALLOWED_CONTROLS or (unicodedata.category(ch) not in {"Cc", "Co"} and ch != "\ufffd")
        for ch in text
    )


def scts_time(raw: str | None) -> datetime | None:
    """``SCTS: 25110914563088`` → 2025-11-09 14:56:30 UTC. The 12 digits are read as UTC: on the
    real device sample they match the row's unix time to the second; the last two are ignored."""
    if not raw or not re.fullmatch(r"\d{12}\d*", raw.strip()):
        return None
    d = raw.strip()
    try:
        return datetime(
            2000 + int(d[0:2]), int(d[2:4]), int(d[4:6]), int(d[6:8]), int(d[8:10]), int(d[10:12]),
            tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        return None


# --- numbers ---------------------------------------------------------------------------------

# short codes (22395) and international numbers without "+" (34607008077) stay as digits
_DIGIT_SENDER = re.compile(r"\+?\d{3,15}")
# alphanumeric sender ids ("Google", "T-Mobile"): at least one letter, GSM allows 11 characters
_ALPHA_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9][A-Za-z0-9 .&'_+-]{0,19}")


def sender_of(raw: object, where: str) -> str:
    """E.164 when it is a phone number, else the short code or alphanumeric id as sent."""
    if not isinstance(raw, str):
        raise PushRejected(f"{where}: sender must be a string, got {_type(raw)}")
    value = raw.strip()
    if not value:
        raise PushRejected(f"{where}: sender is empty")
    try:
        return normalize_e164(value)
    except ValueError:
        pass
    if _DIGIT_SENDER.fullmatch(value) or _ALPHA_SENDER.fullmatch(value):
        return value
    raise PushRejected(f"{where}: invalid sender {_short(value)}")


def receiver_of(raw: object, where: str) -> str | None:
    """The receiving number in E.164; gateways often leave it empty (None)."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise PushRejected(f"{where}: receiving number must be a string, got {_type(raw)}")
    try:
        return normalize_e164(raw)
    except ValueError as err:
        raise PushRejected(f"{where}: invalid receiving number {_short(raw)}") from err


def _iccid(raw: object, where: str) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise PushRejected(f"{where}: ICCID must be a string, got {_type(raw)}")
    # SIMs report the odd-length filler nibble as a trailing F
    value = raw.strip().rstrip("Ff")
    if not re.fullmatch(r"\d{19,20}", value):
        raise PushRejected(f"{where}: invalid ICCID {_short(raw)} (19-20 digits)")
    return value


def _lenient_iccid(raw: str | None) -> str | None:
    # a status row's ICCID is a hint (an empty or failing port reports junk); never reject for it
    try:
        return _iccid(raw, "")
    except PushRejected:
        return None


def _lenient_number(raw: str | None) -> str | None:
    try:
        return normalize_e164(raw) if raw else None
    except ValueError:
        return None


# --- recv-sms ----------------------------------------------------------------------------------


def _recv_sms(push: RecvSmsPush, gateway_id: str, now: datetime) -> ParsedPush:
    sms: list[SmsReceived] = []
    reports: list[SmsDeliveryReported] = []
    for n, row in enumerate(push.sms, 1):
        where = f"sms row {n}"
        if len(row) < 6:
            raise PushRejected(f"{where}: expected [flag, port, time, from, to, content, ...]")
        flag = row[0]
        if isinstance(flag, bool):  # JSON true == 1 in Python; a gateway never writes it
            raise PushRejected(f"{where}: flag must be 0 or 1, got {_short(flag)}")
        if flag == 0:
            sms.append(_sms_row(row, where, gateway_id, now))
        elif flag == 1:
            reports.append(_report_row(row, where, gateway_id, now))
        else:
            raise PushRejected(f"{where}: unknown flag {_short(flag)} (0 = SMS, 1 = report)")
    return ParsedPush(sms=tuple(sms), reports=tuple(reports))


def _sms_row(
    row: list[int | str | None], where: str, gateway_id: str, now: datetime
) -> SmsReceived:
    _, port, stamp, sender, to, content = row[:6]
    iccid, imsi, inbox_id = [*row[6:9], None, None, None][:3]
    text = decode_content(_string(content, f"{where}: content"))
    return _sms(
        gateway_id=gateway_id,
        port=_port(port, where),
        sender=sender_of(sender, f"{where}: from"),
        to=receiver_of(to, f"{where}: to"),
        iccid=_iccid(iccid, f"{where}: iccid"),
        imsi=_optional_string(imsi, f"{where}: imsi"),
        gateway_sms_id=None if inbox_id in (None, "") else str(inbox_id),
        body=text.text,
        received_at=_unix_time(stamp, where) or scts_time(text.headers.get("scts")) or now,
        now=now,
    )


def _report_row(row: list[Any], where: str, gateway_id: str, now: datetime) -> SmsDeliveryReported:
    # a delivery report: from = the SMSC, to = the original recipient, content = "<code> <scts>"
    _, port, stamp, smsc, recipient, content = row[:6]
    raw = decode_content(_string(content, f"{where}: content")).text.strip()
    code = re.match(r"(\d+)(?:\s+(\d+))?", raw)
    if code is None:
        raise PushRejected(f"{where}: a delivery report's content starts with its status code")
    to = _string(recipient, f"{where}: to").strip()
    if not to:
        raise PushRejected(f"{where}: a delivery report names its recipient in 'to'")
    return SmsDeliveryReported.create(
        producer=PRODUCER,
        time=now,
        gateway_id=gateway_id,
        port=_port(port, where),
        smsc=_string(smsc, f"{where}: from"),
        recipient=_lenient_number(to) or to,
        status_code=int(code.group(1)),
        raw=raw,
        reported_at=_unix_time(stamp, where) or scts_time(code.group(2)) or now,
    )


def _sms(*, now: datetime, **fields: Any) -> SmsReceived:
    try:
        return SmsReceived.create(producer=PRODUCER, time=now, **fields)
    except ValidationError as err:  # every field was checked above; this is the last guard
        raise PushRejected(_reason(err)) from err


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise PushRejected(f"{where} must be a string, got {_type(value)}")
    return value


def _optional_string(value: object, where: str) -> str | None:
    return None if value is None else _string(value, where).strip() or None


def _port(value: object, where: str) -> str | None:
    return _string(value, f"{where}: port").strip() or None


_LAST_UNIX_SECOND = 32_503_680_000  # year 3000: anything later is a garbled field


def _unix_time(value: object, where: str) -> datetime | None:
    """Row time in unix seconds; 0 means "now" (None here, the caller picks)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PushRejected(f"{where}: time must be unix seconds, got {_type(value)}")
    if not 0 <= value < _LAST_UNIX_SECOND:
        raise PushRejected(f"{where}: time {value} is out of range")
    return datetime.fromtimestamp(value, UTC) if value else None


# --- dev-status / port-status -----------------------------------------------------------------


def _dev_status(push: DevStatusPush, gateway_id: str, now: datetime) -> ParsedPush:
    return _status(
        push.mac,
        gateway_id,
        push.status,
        now,
        seq=push.seq,
        max_ports=push.max_ports,
        max_slots=push.max_slots,
    )


def _port_status(push: PortStatusPush, gateway_id: str, now: datetime) -> ParsedPush:
    return _status(push.mac, gateway_id, [push], now, seq=None, max_ports=None, max_slots=None)


def _status(
    mac: str | None,
    gateway_id: str,
    rows: Sequence[PortStatusRow],
    now: datetime,
    *,
    seq: int | None,
    max_ports: int | None,
    max_slots: int | None,
) -> ParsedPush:
    ports = [
        PortStatus(
            port=row.port.strip(),
            status_code=row.st,
            iccid=_lenient_iccid(row.iccid),
            imsi=row.imsi or None,
            number=_lenient_number(row.sn),
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
    )
    return ParsedPush(statuses=(event,))


# --- JSON and validation helpers ---------------------------------------------------------------


def _load_json(body: object) -> object:
    if not isinstance(body, bytes | bytearray):
        return body
    if not body.strip():
        raise PushRejected("empty body", MALFORMED)
    try:
        return json.loads(body)
    except json.JSONDecodeError as err:
        raise PushRejected(
            f"body is not valid JSON: {err.msg} (line {err.lineno} column {err.colno})", MALFORMED
        ) from err
    except UnicodeDecodeError as err:
        raise PushRejected("body is not UTF-8 JSON", MALFORMED) from err


def _validated(model: type[_M], raw: Mapping[str, Any], where: str = "") -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise PushRejected(where + _reason(err)) from err


def _reason(err: ValidationError) -> str:
    errors = err.errors(include_url=False, include_input=False)
    first = errors[0]
    location = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location}: {first['msg']}{more}"


def _type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
