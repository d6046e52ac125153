"""Our signatures as the public reference verifier (``standardwebhooks``) sees them."""

import base64
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from infra.webhook_signing import (
    KEY_FILE_NAME,
    SecretBox,
    SecretUnsealError,
    generate_secret,
    headers_for,
    load_or_create_key,
    secret_key,
    sign,
)

BODY = b'{"event_type":"sms.received","data":{"body":"Your code is 123456","to":"+12345678901"}}'


def test_generated_secret_is_whsec_standard_base64_of_24_to_32_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert 24 <= len(key) <= 32
    assert generate_secret() != secret


def test_signature_verifies_with_the_reference_library() -> None:
    secret = generate_secret()
    headers = headers_for([secret], "sms.received_0123456789abcdef", int(time.time()), BODY)

    assert Webhook(secret).verify(BODY, headers) == {
        "event_type": "sms.received",
        "data": {"body": "Your code is 123456", "to": "+12345678901"},
    }
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "sms.received_0123456789abcdef"


def test_signature_matches_the_reference_signer_byte_for_byte() -> None:
    secret = generate_secret()
    ours = sign(secret, "msg_1", 1_763_900_000, BODY)
    theirs = Webhook(secret).sign(
        "msg_1", datetime.fromtimestamp(1_763_900_000, UTC), BODY.decode()
    )
    assert ours == theirs


def test_non_ascii_body_is_signed_over_its_utf8_bytes() -> None:
    secret = generate_secret()
    body = '{"body":"Código: 123 ✓"}'.encode()
    headers = headers_for([secret], "msg_2", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"body": "Código: 123 ✓"}


def test_tampered_body_id_or_timestamp_fail_verification() -> None:
    secret = generate_secret()
    now = int(time.time())
    headers = headers_for([secret], "msg_3", now, BODY)
    verifier = Webhook(secret)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(BODY.replace(b"123456", b"654321"), headers)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(BODY, {**headers, "webhook-id": "msg_4"})
    with pytest.raises(WebhookVerificationError):
        verifier.verify(BODY, {**headers, "webhook-timestamp": str(now + 1)})


def test_rotation_sends_both_signatures_and_either_secret_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    headers = headers_for([new, old], "msg_5", int(time.time()), BODY)

    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(BODY, headers)
    assert Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_secret_without_prefix_or_padding_is_the_same_key() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 25).decode()  # 25 bytes: padded base64
    unpadded = secret.removeprefix("whsec_").rstrip("=")
    assert sign(unpadded, "m", 1, BODY) == sign(secret, "m", 1, BODY)


def test_invalid_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="not valid base64") as err:
        secret_key("whsec_not*base64!")
    assert "not*base64" not in str(err.value)
    with pytest.raises(ValueError, match="at least one"):
        headers_for([], "m", 1, BODY)


def test_seal_unseal_round_trip_and_sealed_form_hides_the_secret() -> None:
    box = SecretBox([Fernet.generate_key()])
    secret = generate_secret()
    sealed = box.seal(secret)

    assert secret not in sealed
    assert secret.removeprefix("whsec_") not in sealed
    assert box.unseal(sealed) == secret
    assert box.seal(secret) != sealed  # randomised: equal secrets are not linkable
    assert "whsec" not in repr(box)


def test_unseal_with_the_wrong_key_is_refused() -> None:
    sealed = SecretBox([Fernet.generate_key()]).seal(generate_secret())
    with pytest.raises(SecretUnsealError):
        SecretBox([Fernet.generate_key()]).unseal(sealed)
    with pytest.raises(SecretUnsealError):
        SecretBox([Fernet.generate_key()]).unseal("garbage")


def test_deployment_key_rotation_opens_old_seals_and_reseals_under_the_new_key() -> None:
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    secret = generate_secret()
    sealed_old = SecretBox([old_key]).seal(secret)

    rotating = SecretBox([new_key, old_key])
    assert rotating.unseal(sealed_old) == secret
    assert SecretBox([new_key]).unseal(rotating.reseal(sealed_old)) == secret


def test_key_file_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "state" / KEY_FILE_NAME
    key = load_or_create_key(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    Fernet(key)  # a usable Fernet key


def test_box_from_setting_prefers_the_setting_over_the_key_file(tmp_path: Path) -> None:
    configured = Fernet.generate_key()
    sealed = SecretBox([configured]).seal(generate_secret())

    assert SecretBox.from_setting(configured.decode(), tmp_path).unseal(sealed)
    assert not (tmp_path / KEY_FILE_NAME).exists()
    from_file = SecretBox.from_setting(None, tmp_path)
    assert (tmp_path / KEY_FILE_NAME).exists()
    with pytest.raises(SecretUnsealError):
        from_file.unseal(sealed)


def test_malformed_setting_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 url-safe base64 bytes"):
        SecretBox.from_setting("too-short", Path("/nonexistent"))
