"""Reseller API tokens (shape, hash), the per-token budget and the reseller actor."""

from __future__ import annotations

import pytest

from dashboard.reseller_api.rate_limit import RateLimiter, retry_after_header
from infra.actors import channel_of, reseller_actor
from infra.redaction import redact
from infra.reseller_tokens import generate_token, looks_like_token, token_hash
from infra.webhook_signing import generate_secret


def test_tokens_are_random_recognisable_and_kept_only_as_their_hash() -> None:
    first, second = generate_token(), generate_token()
    assert first != second
    assert first.startswith("sfr_")
    assert looks_like_token(first)
    assert token_hash(first) == token_hash(first) != token_hash(second)
    assert first not in token_hash(first)
    assert len(token_hash(first)) == 64
    for junk in ("", "Bearer x", "sfr_short", "whsec_" + "A" * 43, "sfr_" + "é" * 43):
        assert not looks_like_token(junk)


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_token_gets_its_burst_then_waits_while_other_tokens_go_on() -> None:
    clock = Ticks()
    limiter = RateLimiter(rate_per_s=2.0, burst=3, now=clock)
    assert [limiter.take("a") for _ in range(3)] == [None, None, None]
    wait = limiter.take("a")
    assert wait is not None
    assert wait == pytest.approx(0.5)
    assert retry_after_header(wait) == "1"
    assert limiter.take("b") is None  # another token's budget is its own
    clock.now += 0.5
    assert limiter.take("a") is None
    assert limiter.take("a") is not None


def test_a_reseller_is_named_by_its_token() -> None:
    actor = reseller_actor("acme", "billing\nsystem")
    assert actor == "reseller:acme/billing system"
    assert channel_of(actor) == "reseller"


def test_issued_tokens_and_signing_secrets_are_masked_by_their_shape() -> None:
    token, secret = generate_token(), generate_secret()
    line = f"retrying with {token} for url?secret_param={secret}x and whsec_short"
    masked = redact(line)
    assert token not in masked
    assert secret not in masked
    assert "sfr_*** for" in masked
    assert "whsec_short" in masked  # too short to be one of ours
