"""``simfleet config check``: what a configuration lacks for the way it will run, no values shown.

Unset infrastructure is not an error (it means embedded/sandbox), but in production it is; once
the real carrier or gateways are configured, their credentials become required.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError
from pydantic_settings import SettingsError

from infra.dev_secrets import with_development_defaults
from infra.settings import HelixSettings, Settings, SkylineSettings
from infra.user_errors import settings_problem

Level = Literal["ok", "missing", "note"]


@dataclass(frozen=True)
class Finding:
    name: str
    level: Level
    note: str


def _need(name: str, present: bool, why: str) -> Finding:
    return Finding(name, "ok" if present else "missing", why)


def check(settings: Settings) -> list[Finding]:
    production = settings.env == "production"
    return [
        *_secrets(settings),
        *_services(settings, production),
        *_helix(settings.helix, production),
        *_skyline(settings.skyline, production),
        *_sealing(settings, production),
    ]


def _secrets(settings: Settings) -> list[Finding]:
    sec = settings.secrets
    return [
        _need("GATEWAY_SECRET", bool(sec.gateway_secret.get_secret_value()), "gateway pushes"),
        _need("DASHBOARD_AUTH", ":" in sec.dashboard_auth.get_secret_value(), "user:password"),
    ]


def _services(settings: Settings, production: bool) -> list[Finding]:
    """The broker and the database: embedded ones start where none is named, but not in
    production."""
    found = []
    for name, value, role in (
        ("KAFKA_BOOTSTRAP_SERVERS", settings.kafka.kafka_bootstrap_servers, "broker"),
        ("DATABASE_URL", settings.postgres.database_url, "Postgres server"),
    ):
        if value or production:
            found.append(_need(name, bool(value), f"the {role}"))
        else:
            found.append(Finding(name, "note", f"unset: an embedded {role} is started"))
    return found


def _helix(hx: HelixSettings, production: bool) -> list[Finding]:
    if hx.api_base is None:
        return [Finding("HX_API_BASE", "missing" if production else "note", "unset: Helix sandbox")]
    required = {
        "HX_TOKEN_URL": bool(hx.token_url),
        "HX_CLIENT_ID": bool(hx.client_id),
        "HX_AUDIENCE": bool(hx.audience),
        "HX_GRANT_USERNAME": bool(hx.grant_username),
        "HX_GRANT_PASSWORD": bool(hx.grant_password.get_secret_value()),
        "HX_ACTIVATION_CLIENT_ID": hx.activation_client_id > 0,
        "HX_PLAN_ID": hx.plan_id > 0,
        "HX_BAN": bool(hx.ban),
        "HX_FAN": bool(hx.fan),
        "HX_ADDRESS1": bool(hx.address1),
        "HX_CITY": bool(hx.city),
        "HX_STATE": bool(hx.state),
        "HX_ZIP": bool(hx.zip),
    }
    return [_need(n, ok, "the Helix API is configured") for n, ok in required.items()]


def _skyline(sk: SkylineSettings, production: bool) -> list[Finding]:
    if not sk.configured:
        severity: Level = "missing" if production else "note"
        return [Finding("SK_HOST", severity, "unset (and no SK_GATEWAYS): sandbox gateways")]
    configured = "the gateways are configured"
    return [
        _need("SK_USERNAME", bool(sk.username), configured),
        _need("SK_PASSWORD", bool(sk.password.get_secret_value()), configured),
    ]


def _sealing(settings: Settings, production: bool) -> list[Finding]:
    sealing = settings.webhooks.sealing_key
    if sealing or production:
        return [_need("WEBHOOK_SEALING_KEY", bool(sealing), "seals endpoint secrets")]
    return [Finding("WEBHOOK_SEALING_KEY", "note", "unset: a key file in the state dir")]


def start_problems(settings: Settings) -> list[str]:
    """What stops a production process from starting (``config check``'s errors); never
    anything outside production, where unset infrastructure means the embedded one."""
    if settings.env != "production":
        return []
    return [f"{f.name}: {f.note}" for f in check(settings) if f.level == "missing"]


def invalid_reasons(err: ValidationError) -> str:
    # pydantic's message names fields and reasons; the input values are not printed
    return "\n".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())


def load_and_check() -> tuple[list[Finding], str | None]:
    """The findings, or the validation error of a configuration that does not even load."""
    try:
        return check(with_development_defaults(Settings())), None
    except (ValidationError, SettingsError) as err:
        # the variables and reasons; the input values are not printed (one may be a secret)
        return [], settings_problem(err)
