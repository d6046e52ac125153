"""Who asked: the actor recorded as ``requested_by`` on every operator command's events.

An actor reads ``<channel>:<name>``:

- ``dashboard:<user>`` — a dashboard form, by the Basic-auth user;
- ``api:<user>`` — the JSON API (``/api/…``), by the same Basic-auth user;
- ``run:<SECRET_VARIABLE>`` — an ``/api/run/*`` call, named by the *variable* holding the secret
  it offered (``run:BULK_RUN_SECRET``), never by the secret itself;
- ``cli:<os user>`` — the ``simfleet`` CLI, by the operating-system user (the one behind
  ``sudo`` when run through it);
- ``reseller:<reseller id>/<token name>`` — a reseller, through its API or portal, by the token
  it signed in with.

``system`` marks requests nobody typed (scheduler ticks, consumers' own requests, the demo
seed): they are not operator commands and stay out of the audit.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping

SYSTEM = "system"
CHANNELS = ("dashboard", "api", "run", "cli", "reseller")
MAX_NAME = 100
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")


def actor(channel: str, name: str) -> str:
    """``channel:name`` with the name made printable and short (it lands in events and pages)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; known: {CHANNELS}")
    clean = " ".join(_UNPRINTABLE.sub(" ", name).split())[:MAX_NAME]
    return f"{channel}:{clean or 'unknown'}"


def dashboard_actor(user: str, path: str) -> str:
    """The Basic-auth user, through a page (``dashboard:``) or the JSON API (``api:``)."""
    return actor("api" if path.startswith("/api/") else "dashboard", user)


def run_actor(secret_variable: str) -> str:
    """An ``/api/run/*`` caller is known only by which secret it holds: name the secret."""
    return actor("run", secret_variable)


def reseller_actor(reseller_id: str, token_name: str) -> str:
    """A reseller's own request, named by the token it used (several people, several tokens)."""
    return actor("reseller", f"{reseller_id}/{token_name}")


def cli_actor(environ: Mapping[str, str] | None = None) -> str:
    """The operating-system user running the CLI; under ``sudo``, the user who ran sudo."""
    env = os.environ if environ is None else environ
    name = env.get("SUDO_USER") or _login_name(env)
    return actor("cli", name)


def _login_name(env: Mapping[str, str]) -> str:
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if env.get(variable):
            return env[variable]
    try:
        return getpass.getuser()  # the password database, where no variable names the user
    except (OSError, KeyError):
        return "unknown"


def channel_of(requested_by: str) -> str:
    """``dashboard``/``api``/``run``/``cli``/``reseller``; ``system``; ``other`` for a name without a channel
    (older events said ``bulk_import``; a bare ``cli`` is still the CLI)."""
    channel = requested_by.partition(":")[0]
    if channel in CHANNELS:
        return channel
    return SYSTEM if requested_by == SYSTEM else "other"


def is_operator(requested_by: str) -> bool:
    return requested_by != SYSTEM
