"""structlog set-up: JSON lines in production, readable console on a terminal, secrets masked.

Consumers bind event id / type / correlation id through ``structlog.contextvars`` (see
``infra.kafka.EventContextMiddleware``), so every line a handler logs names its event.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "***"
SECRET_KEYS = frozenset(
    {"password", "secret", "token", "access_token", "authorization", "api_key", "signing_secret"}
)


class SecretMasker:
    """Replaces configured secret values anywhere in a log line, and values of secret-named keys."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def mask(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {
                k: REDACTED if str(k).lower() in SECRET_KEYS else self.mask(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.mask(v) for v in value]
        return value

    def __call__(
        self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return {
            k: REDACTED if k.lower() in SECRET_KEYS else self.mask(v) for k, v in event_dict.items()
        }


def configure(fmt: str = "auto", level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        SecretMasker(secrets),
    ]
    if as_json:
        processors.append(structlog.processors.dict_tracebacks)
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
