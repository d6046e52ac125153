"""A pushed SMS's content: base64 or plain text, with or without the gateway's header block.

Pure functions, no I/O; the header block's ``SCTS`` line also gives the time an SMS was sent.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime


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
