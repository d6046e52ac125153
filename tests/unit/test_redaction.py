import pytest

from infra.redaction import _BEARER, _ISSUED, _KEY_VALUE, REDACTED, Redactor, is_secret_key, redact

TOKEN_REQUEST = {
    "grant_type": "password",
    "client_id": "auth0-client-XYZ",
    "audience": "https://hx.example/api",
    "username": "ops@example.com",
    "password": "hunter2-grant",
}


def test_values_under_secret_keys_are_masked_at_any_depth() -> None:
    body = {
        "access_token": "eyJhbGciOi.abc.def",
        "token_type": "Bearer",
        "expires_in": 86400,
        "nested": [{"Authorization": "Bearer eyJhbGciOi.abc.def"}, {"client_secret": "cs"}],
    }
    assert redact(body) == {
        "access_token": REDACTED,
        "token_type": "Bearer",
        "expires_in": 86400,
        "nested": [{"Authorization": REDACTED}, {"client_secret": REDACTED}],
    }


def test_configured_secret_values_are_masked_anywhere_even_inside_text() -> None:
    redacted = redact(
        {
            **TOKEN_REQUEST,
            "error": "login for auth0-client-XYZ failed",
            "list": ["x hunter2-grant y"],
        },
        secrets=["hunter2-grant", "auth0-client-XYZ"],
    )
    assert redacted["client_id"] == REDACTED
    assert redacted["password"] == REDACTED
    assert redacted["error"] == f"login for {REDACTED} failed"
    assert redacted["list"] == [f"x {REDACTED} y"]
    assert redacted["username"] == "ops@example.com"
    assert "hunter2" not in str(redacted)


def test_form_bodies_and_bearer_headers_in_free_text_are_masked() -> None:
    text = "grant_type=password&password=p4ss-word&client_id=c; header Authorization: Bearer abcdefgh1234"
    redacted = redact(text)
    assert "p4ss-word" not in redacted
    assert "abcdefgh1234" not in redacted
    assert "grant_type=password" in redacted


def test_the_input_is_not_modified() -> None:
    body = {"password": "secret-value", "items": [{"token": "t0k3n-value"}]}
    redact(body)
    assert body == {"password": "secret-value", "items": [{"token": "t0k3n-value"}]}


def test_short_secrets_are_not_replaced_inside_text() -> None:
    assert redact("a b c abc", secrets=["a", "abc"]) == "a b c abc"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("grant_password", True),
        ("Client-Secret", True),
        ("refresh_token", True),
        ("X-API-Key", True),
        ("token_type", False),
        ("mobilitySubscriptionId", False),
        ("subscriberNumber", False),
    ],
)
def test_secret_key_names(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_redactor_learns_secrets_at_run_time() -> None:
    redactor = Redactor(["hunter2-grant"])
    redactor.add("eyJfresh.token.value")
    assert redactor("got eyJfresh.token.value with hunter2-grant") == (
        f"got {REDACTED} with {REDACTED}"
    )


def test_non_string_scalars_pass_through() -> None:
    assert redact({"n": 1, "ok": True, "none": None, "f": 1.5}) == {
        "n": 1,
        "ok": True,
        "none": None,
        "f": 1.5,
    }


@pytest.mark.parametrize(
    "text",
    [
        "\u017fecret=abcdef",  # a long s: the pattern's case-blind match takes it for "s"
        "to\u212aen: abcdef",  # a Kelvin sign, likewise a "k"
        "Authorization: Bearer abcdefghijk",
        "PASSWORD=hunter22",
        "x sfr_abcdefghijklmnopqrstuvwxyz",
        '{"Access_Token": "abc.def"}',
    ],
)
def test_the_look_before_a_pattern_misses_nothing_the_pattern_masks(text: str) -> None:
    by_patterns = _ISSUED.sub(lambda m: m.group(1) + REDACTED, text)
    by_patterns = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", by_patterns)
    by_patterns = _KEY_VALUE.sub(lambda m: m.group(1) + REDACTED, by_patterns)
    assert redact(text) == by_patterns != text
