"""Checks of a push's fields (numbers, ICCIDs, times, JSON) shared by the push parsers.

Every problem raises one ``PushRejected(reason, status_code)``: 400 when the body cannot be read
at all (not JSON, not UTF-8, empty), 422 when it can be read but does not fit the format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from events.types import normalize_e164

_M = TypeVar("_M", bound=BaseModel)

MALFORMED = 400
INVALID = 422
# the most a concatenated SMS can carry: 255 parts of 153 GSM-7 characters (UCS-2 carries less)
MAX_SMS_BODY_CHARS = 255 * 153
# rows or items in one push: a gateway pushes what it received since the last push, a few
# dozen at most; a bound keeps one request from becoming an unbounded batch of events
MAX_PUSH_ITEMS = 1000


class PushRejected(ValueError):
    """The push cannot become events; ``reason`` is said to the gateway and kept with the payload."""

    def __init__(self, reason: str, status_code: int = INVALID) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


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
    raise PushRejected(f"{where}: invalid sender {short_repr(value)}")


def receiver_of(raw: object, where: str) -> str | None:
    """The receiving number in E.164; gateways often leave it empty (None)."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise PushRejected(f"{where}: receiving number must be a string, got {_type(raw)}")
    try:
        return normalize_e164(raw)
    except ValueError as err:
        raise PushRejected(f"{where}: invalid receiving number {short_repr(raw)}") from err


def iccid_of(raw: object, where: str) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise PushRejected(f"{where}: ICCID must be a string, got {_type(raw)}")
    # SIMs report the odd-length filler nibble as a trailing F
    value = raw.strip().rstrip("Ff")
    if not re.fullmatch(r"\d{19,20}", value):
        raise PushRejected(f"{where}: invalid ICCID {short_repr(raw)} (19-20 digits)")
    return value


def lenient_iccid(raw: str | None) -> str | None:
    # a status row's ICCID is a hint (an empty or failing port reports junk); never reject for it
    try:
        return iccid_of(raw, "")
    except PushRejected:
        return None


def lenient_number(raw: str | None) -> str | None:
    try:
        return normalize_e164(raw) if raw else None
    except ValueError:
        return None


def string_of(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise PushRejected(f"{where} must be a string, got {_type(value)}")
    return value


def optional_string_of(value: object, where: str) -> str | None:
    return None if value is None else string_of(value, where).strip() or None


def port_of(value: object, where: str) -> str | None:
    return string_of(value, f"{where}: port").strip() or None


_LAST_UNIX_SECOND = 32_503_680_000  # year 3000: anything later is a garbled field


def unix_time_of(value: object, where: str) -> datetime | None:
    """Row time in unix seconds; 0 means "now" (None here, the caller picks)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PushRejected(f"{where}: time must be unix seconds, got {_type(value)}")
    if not 0 <= value < _LAST_UNIX_SECOND:
        raise PushRejected(f"{where}: time {value} is out of range")
    return datetime.fromtimestamp(value, UTC) if value else None


# --- JSON and validation ------------------------------------------------------------------------


def load_json(body: object) -> object:
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
    except RecursionError as err:  # "[[[[…" thousands deep: the decoder's stack, not ours
        raise PushRejected("body is not usable JSON: nested too deeply", MALFORMED) from err


def sms_body_of(text: str, where: str) -> str:
    if len(text) > MAX_SMS_BODY_CHARS:
        raise PushRejected(
            f"{where}SMS text of {len(text)} characters is longer than an SMS can be "
            f"({MAX_SMS_BODY_CHARS}: 255 concatenated parts)"
        )
    return text


def validated(model: type[_M], raw: Mapping[str, Any], where: str = "") -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise PushRejected(where + validation_reason(err)) from err


def validation_reason(err: ValidationError) -> str:
    errors = err.errors(include_url=False, include_input=False)
    first = errors[0]
    location = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location}: {first['msg']}{more}"


def _type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
