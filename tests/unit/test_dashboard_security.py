"""The dashboard's credential check and CSRF tokens (pure; the HTTP side is in integration)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.security import CSRF_TTL_S, Credentials, CsrfTokens
from tests.support.clock import ControlledClock


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_dashboard_auth_must_name_a_user_and_a_password() -> None:
    assert Credentials.parse("") is None
    assert Credentials.parse("operator") is None
    assert Credentials.parse(":secret") is None
    assert Credentials.parse("operator:") is None
    assert Credentials.parse("op:pa:ss") == Credentials("op", "pa:ss")


def test_only_the_configured_pair_is_accepted() -> None:
    credentials = Credentials("operator", "s3cret-pass")
    assert credentials.check(basic("operator", "s3cret-pass")) == "operator"
    assert credentials.check(basic("operator", "s3cret-pas")) is None
    assert credentials.check(basic("other", "s3cret-pass")) is None
    assert credentials.check("Bearer s3cret-pass") is None
    assert credentials.check("Basic !!!not-base64") is None
    assert credentials.check(None) is None


SERVER_SECRET = b"k" * 32


def test_knowing_the_password_is_not_enough_to_forge_a_csrf_token() -> None:
    """The key is not a hash of DASHBOARD_AUTH: another server secret, another key."""
    clock = ControlledClock(datetime(2025, 6, 2, 12, 0, tzinfo=UTC))
    operator = Credentials("operator", "one")
    token = CsrfTokens(operator, clock, os.urandom(32)).issue("operator")
    assert not CsrfTokens(operator, clock, os.urandom(32)).valid("operator", token)
    forged_the_old_way = hmac.new(
        hashlib.sha256(b"simfleet-dashboard-csrf\0operator:one").digest(),
        f"operator|{token.partition('.')[0]}".encode(),
        hashlib.sha256,
    ).hexdigest()
    assert not CsrfTokens(operator, clock, os.urandom(32)).valid(
        "operator", f"{token.partition('.')[0]}.{forged_the_old_way}"
    )
    with pytest.raises(ValueError, match="random"):
        CsrfTokens(operator, clock, b"short")


def test_a_csrf_token_is_bound_to_user_password_and_time() -> None:
    clock = ControlledClock(datetime(2025, 6, 2, 12, 0, tzinfo=UTC))
    tokens = CsrfTokens(Credentials("operator", "one"), clock, SERVER_SECRET)
    token = tokens.issue("operator")

    assert tokens.valid("operator", token)
    assert not tokens.valid("someone-else", token)
    assert not CsrfTokens(Credentials("operator", "two"), clock, SERVER_SECRET).valid(
        "operator", token
    )
    assert not tokens.valid("operator", token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert not tokens.valid("operator", "")
    clock.advance(timedelta(seconds=CSRF_TTL_S + 1))
    assert not tokens.valid("operator", token)
