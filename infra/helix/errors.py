"""Helix errors: the client's small exception hierarchy and how a carrier answer maps onto it.

Three kinds: the carrier refused (``HelixRejected``), it could not answer now (``HelixUnavailable``,
retried), or an activation's outcome was lost (``HelixOutcomeUnknown``).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

PERMANENT_5XX = ("subscriber must be active",)  # the carrier answers some refusals with a 500
ALREADY_ACTIVE = "already has an active subscription"  # an activation refused as a duplicate


class HelixError(Exception):
    retryable = False

    def __init__(
        self, message: str, status_code: int | None = None, carrier_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code, self.carrier_message = status_code, carrier_message

    @property
    def reason(self) -> str:
        return self.carrier_message or str(self)


class HelixRejected(HelixError):
    """The carrier refused (4xx, or a known permanent 5xx such as "Subscriber must be active")."""


class HelixUnavailable(HelixError):
    """Transient: 429, 5xx, timeout, connection. ``ambiguous``: the carrier may have acted."""

    retryable = True

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        carrier_message: str | None = None,
        *,
        retry_after: float | None = None,
        ambiguous: bool = True,
    ) -> None:
        super().__init__(message, status_code, carrier_message)
        self.retry_after, self.ambiguous = retry_after, ambiguous


class HelixOutcomeUnknown(HelixError):
    """An activation's answer was lost and its retry found the ICCID active: most likely our own
    line, but only details (which need the subscription id) could say so."""


def reply_body(response: httpx.Response) -> Any:
    """The JSON reply, or the start of the text when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text[:2000]


def carrier_message(body: Any) -> str | None:
    if isinstance(body, dict):
        for key in ("errorMessage", "message", "error_description", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])
        rejected = body.get("rejected")
        if isinstance(rejected, list) and rejected and isinstance(rejected[0], dict):
            return str(rejected[0].get("message", ""))
    return body[:300] if isinstance(body, str) and body else None


def error_for(response: httpx.Response, body: Any) -> HelixError:
    status, message = response.status_code, carrier_message(body)
    text = f"Helix answered {status}" + (f": {message}" if message else "")
    permanent = status >= 500 and any(p in (message or "").lower() for p in PERMANENT_5XX)
    if status in (408, 429) or (status >= 500 and not permanent):
        return HelixUnavailable(
            text,
            status_code=status,
            carrier_message=message,
            retry_after=_retry_after(response),
            # 429 and 503 say the request was not processed; 408 and other 5xx may hide a done deed
            ambiguous=status not in (429, 503),
        )
    return HelixRejected(text, status, message)


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds: delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("retry-after", "")
    with contextlib.suppress(ValueError):
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        return (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
    return None
