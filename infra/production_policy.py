"""What production refuses: weak secrets and the settings that open a hole.

Checked by the ``Settings`` validator when ``SIMFLEET_ENV=production``, so a production process
with any of these does not even load its configuration. Values are never echoed: each problem
names the variable and the rule.

- Secrets simfleet checks itself (``GATEWAY_SECRET``, the run secrets, the dashboard password)
  have a minimum length; generate them (``python -c "import secrets;
  print(secrets.token_urlsafe(24))"``). An unset run secret is allowed: its action is off.
- ``WEBHOOK_SEALING_KEY`` must be Fernet keys (32 random bytes, url-safe base64), not a phrase.
- Credentials of other systems (Helix, Skyline) are theirs to choose: only placeholders refused.
- ``WEBHOOK_ALLOW_PRIVATE`` / ``WEBHOOK_ALLOW_HTTP`` exist for the sandbox and tests; production
  refuses them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

MIN_SECRET_CHARS = 16
MIN_PASSWORD_CHARS = 12
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "password", "admin:admin"})
RUN_SECRETS = (
    "FINALIZER_RUN_SECRET",
    "ADMIN_RUN_SECRET",
    "BULK_RUN_SECRET",
    "SYNC_SECRET",
    "CANCEL_SECRET",
)
# other systems' credentials: required, never a placeholder, their length is not ours to set
REQUIRED = ("GATEWAY_SECRET", "DASHBOARD_AUTH", "HX_GRANT_PASSWORD", "SK_PASSWORD", "HX_CLIENT_ID")


def _is_fernet_key(key: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(key.encode())) == 32
    except (binascii.Error, ValueError):
        return False


def production_problems(
    values: Mapping[str, str], *, allow_private: bool, allow_http: bool
) -> list[str]:
    """Every rule a production configuration breaks, by variable; empty when it may start.
    ``values``: every secret by variable name (``Settings.secret_values``)."""
    problems = [
        f"{name}: empty or a placeholder"
        for name in REQUIRED
        if values.get(name, "").strip().lower() in PLACEHOLDER_SECRETS
    ]
    gateway = values["GATEWAY_SECRET"]
    if gateway and len(gateway) < MIN_SECRET_CHARS:
        problems.append(f"GATEWAY_SECRET: shorter than {MIN_SECRET_CHARS} characters")
    problems += [
        f"{name}: shorter than {MIN_SECRET_CHARS} characters (unset = off)"
        for name in RUN_SECRETS
        if values[name] and len(values[name]) < MIN_SECRET_CHARS
    ]
    user, _, password = values["DASHBOARD_AUTH"].partition(":")
    if values["DASHBOARD_AUTH"]:
        if not user or len(password) < MIN_PASSWORD_CHARS:
            problems.append(
                f"DASHBOARD_AUTH: user:password, a password of {MIN_PASSWORD_CHARS}+ characters"
            )
        elif password.lower() in PLACEHOLDER_SECRETS | {user.lower()}:
            problems.append("DASHBOARD_AUTH: the password is a placeholder")
    sealing = values["WEBHOOK_SEALING_KEY"]
    keys = [k.strip() for k in sealing.split(",") if k.strip()]
    if not keys or not all(_is_fernet_key(k) for k in keys):
        problems.append("WEBHOOK_SEALING_KEY: Fernet keys (32 bytes, url-safe base64), required")
    for name, value in (
        ("WEBHOOK_ALLOW_PRIVATE", allow_private),
        ("WEBHOOK_ALLOW_HTTP", allow_http),
    ):
        if value:
            problems.append(f"{name}: for development and tests only")
    return problems
