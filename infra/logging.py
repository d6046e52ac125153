"""structlog set-up: JSON lines in production, readable console on a terminal, secrets masked.

Consumers bind event id / type / correlation id through ``structlog.contextvars`` (the
dead-letter middleware in ``infra.dead_letters`` and the provisioning lines), so every line a handler
logs names its event.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from infra.redaction import REDACTED, Redactor, is_secret_key


class SecretMasker:
    """structlog processor: values of secret-named keys and every configured secret, masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._redact = Redactor(secrets)

    def mask(self, value: Any) -> Any:
        return self._redact(value)

    def __call__(
        self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return {k: REDACTED if is_secret_key(k) else self._redact(v) for k, v in event_dict.items()}


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
        # look stderr up per logger, not once: it may be replaced (test capture, daemonising)
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
