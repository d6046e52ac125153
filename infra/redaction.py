"""Secret redaction for anything that leaves a process: audit events, log lines, stored bodies.

Two nets, because either alone leaks: values under secret-looking keys are masked wherever
they sit, and every configured secret value (grant password, client id, live access tokens) is
masked wherever it appears, even inside free text such as an error message or a form body.
Secrets this deployment hands out and never keeps in clear (reseller API tokens ``sfr_…``,
endpoint signing secrets ``whsec_…``) are recognised by their shape.
"""

from __future__ import annotations

import functools
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


_PLAIN = frozenset({int, float, bool, type(None)})


def is_secret_key(key: object) -> bool:
    return _is_secret_name(str(key))


@functools.lru_cache(maxsize=4096)  # the same few keys come back in every carrier answer
def _is_secret_name(key: str) -> bool:
    name = key.lower().replace("-", "_")
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
    # the JSON types by identity first: the ABC checks below cost more than the masking
    kind = type(value)
    if kind is str:
        return _redact_text(value, secrets)
    if kind in _PLAIN:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {
            k: REDACTED if is_secret_key(k) and v not in (None, "") else _redact(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, secrets) for v in value]
    if isinstance(value, bytes):
        return _redact_text(value.decode("utf-8", "replace"), secrets)
    if isinstance(value, str):
        return _redact_text(value, secrets)
    return value


def _redact_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    # each pattern runs only where the words it needs are: a carrier answer is mostly text
    # none of them can match, and the patterns cost more than these looks
    if "sfr_" in text or "whsec_" in text:
        text = _ISSUED.sub(lambda m: m.group(1) + REDACTED, text)
    lowered = text.casefold()  # as the patterns match: a long s or a Kelvin sign too
    if "bearer" in lowered:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "token" in lowered or "secret" in lowered or "password" in lowered:
        text = _KEY_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    return text
