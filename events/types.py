"""Domain value types shared by every event: validated once, at the edge."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

_DIGITS = re.compile(r"\d+")
_SEPARATORS = re.compile(r"[\s\-().]")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def normalize_e164(raw: str) -> str:
    """US-centric normalisation of EXTERNAL_APIS §1.1: 10 digits → +1…, 11 starting with 1 → +…"""
    if raw[:1] == "+" and 8 <= len(raw) - 1 <= 15 and _DIGITS.fullmatch(raw, 1):
        return raw  # already E.164, as every event read back carries it: the common case
    cleaned = _SEPARATORS.sub("", raw)
    digits = cleaned.removeprefix("+")
    if not _DIGITS.fullmatch(digits):
        raise ValueError(f"not a phone number: {raw!r}")
    if len(digits) == 10 and not cleaned.startswith("+"):
        return "+1" + digits
    if len(digits) == 11 and digits.startswith("1"):
        return "+" + digits
    if cleaned.startswith("+") and 8 <= len(digits) <= 15:
        return cleaned
    raise ValueError(f"not an E.164 number: {raw!r}")


def _iccid(value: str) -> str:
    if not _DIGITS.fullmatch(value) or not 19 <= len(value) <= 20:
        raise ValueError("ICCID must be 19-20 digits")
    return value


def _imei(value: str) -> str:
    if not _DIGITS.fullmatch(value) or len(value) != 15:
        raise ValueError("IMEI must be 15 digits")
    return value


def _mdn10(value: str) -> str:
    return normalize_e164(value)


Iccid = Annotated[str, AfterValidator(_iccid)]
Imei = Annotated[str, AfterValidator(_imei)]
E164 = Annotated[str, AfterValidator(_mdn10)]
ResellerId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_\-]+$")
]
EndpointId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
