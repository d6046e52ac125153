"""Development defaults: secrets the operator did not set are generated once per state dir, and
webhooks may target the local sandbox receiver (http, loopback) unless set otherwise.

Only in development: ``make run`` must work on a fresh machine without configuration, yet never
run the bridge or dashboard open. Webhooks to loopback over http open an SSRF hole, so they
need ``SIMFLEET_ENV=development`` said explicitly (``make run`` does): a deployment that merely
forgot to set ``SIMFLEET_ENV`` keeps the guard. The generated values live in
``<state_dir>/dev-secrets.json`` (mode 0600) so they stay the same between runs; the embedded
PostgreSQL keeps its generated password there too (``infra.embedded.postgresql``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from infra.settings import Settings

FILE_NAME = "dev-secrets.json"


def _read(path: Path) -> dict[str, str]:
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        stored = json.loads(path.read_text())
        if isinstance(stored, dict):
            return {str(k): str(v) for k, v in stored.items()}
    return {}


def stored_secret(state_dir: Path, name: str, make: Callable[[], str]) -> str:
    """The generated value ``name`` kept in the state dir's secrets file (0600), made on first
    use; a lock keeps two processes starting together from making two different ones."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE_NAME
    lock = os.open(state_dir / f".{FILE_NAME}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        values = _read(path)
        if name not in values:
            values[name] = make()
            fresh = path.with_name(f".{FILE_NAME}.{os.getpid()}")
            fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(values, out)
            os.replace(fresh, path)
        return values[name]
    finally:
        os.close(lock)


_GENERATORS: dict[str, Callable[[], str]] = {
    "gateway_secret": lambda: secrets.token_urlsafe(24),
    "dashboard_auth": lambda: f"operator:{secrets.token_urlsafe(12)}",
}


def with_development_defaults(settings: Settings) -> Settings:
    if settings.env != "development":
        return settings
    if "env" not in settings.model_fields_set:  # the default, not a choice: no opening
        return with_development_secrets(settings)
    local = {
        name: True
        for name in ("allow_http", "allow_private")
        if name not in settings.webhooks.model_fields_set
    }
    if local:
        webhooks = settings.webhooks.model_copy(update=local)
        settings = settings.model_copy(update={"webhooks": webhooks})
    return with_development_secrets(settings)


def with_development_secrets(settings: Settings) -> Settings:
    if settings.env != "development":
        return settings
    missing = {
        name
        for name in ("gateway_secret", "dashboard_auth")
        if not getattr(settings.secrets, name).get_secret_value()
    }
    if not missing:
        return settings
    update = {
        name: SecretStr(stored_secret(settings.state_dir, name, _GENERATORS[name]))
        for name in missing
    }
    return settings.model_copy(update={"secrets": settings.secrets.model_copy(update=update)})
