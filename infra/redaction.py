"""Secret redaction for anything that leaves a process: audit events, log lines, stored bodies.

Two nets, because either alone leaks: values under secret-looking keys are masked wherever
they sit, and every configured secret value (grant password, client id, live access tokens) is
masked wherever it appears, even inside free text such as an error message or a form body.
Secrets this deployment hands out and never keeps in clear (reseller API tokens ``sfr_…``,
endpoint signing secrets ``whsec_…``) are recognised by their shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "***"
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "authorization",
        "proxy_authorization",
        "api_key",
        "apikey",
        "x_api_key",
        "signing_secret",
        "cookie",
        "set_cookie",
    }
)
# keys such as ``grant_password`` or ``webhook_secret`` are secret too; ``token_type`` is not
SECRET_SUFFIXES = ("password", "secret", "_token", "authorization")
# secrets shorter than this are not replaced inside text: masking "ab" would shred every body
MIN_SECRET_LENGTH = 4

_ISSUED = re.compile(r"\b(sfr_|whsec_)[A-Za-z0-9+/=_-]{20,}")
_BEARER = re.compile(r"\b(Bearer|bearer)\s+[A-Za-z0-9._~+/=-]{8,}")
_KEY_VALUE = re.compile(
    r"(?i)(\"?\b(?:password|client_secret|access_token|refresh_token|id_token|token|secret)\b\"?"
    r"\s*[:=]\s*\"?)([^\"&,\s}]+)"
)


def is_secret_key(key: object) -> bool:
    name = str(key).lower().replace("-", "_")
    return name in SECRET_KEYS or name.endswith(SECRET_SUFFIXES)


class Redactor:
    """``redact`` bound to a set of secret values that may grow (tokens fetched at run time)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._ordered: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        self._secrets.update(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)
        # ordered once per change, not once per value redacted (every carrier call redacts many)
        self._ordered = _longest_first(self._secrets)

    def __call__(self, value: Any) -> Any:
        return _redact(value, self._ordered)


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of ``value`` (JSON-like: dicts, lists, strings, scalars) with secrets masked."""
    return _redact(value, _longest_first(secrets))


def _longest_first(secrets: Iterable[str]) -> list[str]:
    """Longest first, so a secret containing another is masked whole."""
    return sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return _redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if is_secret_key(k) and v not in (None, "") else _redact(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, secrets) for v in value]
    if isinstance(value, bytes):
        return _redact_text(value.decode("utf-8", "replace"), secrets)
    return value


def _redact_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    if text.isalnum():  # no "_", space, ":" or "=": none of the patterns can match
        return text
    text = _ISSUED.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KEY_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
