"""Standard Webhooks signatures (EXTERNAL_APIS §3) and the box that seals endpoint secrets.

A secret is ``whsec_`` + standard base64 of the HMAC key. Standard (not URL-safe) base64
matters: the reference verifier decodes leniently and would silently drop ``-``/``_``,
verifying against a different key.

Endpoint secrets are stored and published only sealed (Fernet under a deployment key), so
events, the archive and the read tables never hold a usable secret. The key comes from a
setting, else from a key file in the state dir created on first use; several keys
(comma-separated) allow rotating the deployment key: the first seals, all unseal.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import os
import secrets as token_source
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from infra.settings import Settings

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = 32
KEY_FILE_NAME = "webhook-sealing.key"


class SecretUnsealError(ValueError):
    """A sealed secret that this deployment's keys cannot open (wrong key or corrupt token)."""


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(token_source.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside ``whsec_<base64>`` (the prefix is optional, as in the spec)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        # the message must not carry the secret itself
        raise ValueError("webhook secret is not valid base64") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


@functools.lru_cache(maxsize=1024)
def _signing_key(secret: str) -> bytes:
    # decoded once per secret, not per POST (the endpoint directory holds the secrets anyway)
    return secret_key(secret)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    # the one-shot C digest: a third of what building an ``hmac.HMAC`` object costs per POST
    digest = hmac.digest(_signing_key(secret), signed, "sha256")
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature per secret, space-separated: during rotation the receiver may hold either."""
    if len(secrets) == 1:  # the usual case, once per POST: no generator and join
        return sign(secrets[0], msg_id, timestamp, body)
    if not secrets:
        raise ValueError("at least one signing secret is required")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def headers_for(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def load_or_create_key(path: Path) -> bytes:
    """The Fernet key in ``path``, created (0600, atomically) when the file does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        # O_EXCL: two processes starting together must end up with one key, not two
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as file:
        file.write(key + b"\n")
    return key


class SecretBox:
    """Seals endpoint secrets for events and tables; unseals them only where a POST is signed."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("SecretBox needs at least one key")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except (ValueError, binascii.Error):
            raise ValueError("webhook sealing key must be 32 url-safe base64 bytes") from None

    @classmethod
    def of_deployment(cls, settings: Settings) -> SecretBox:
        """The deployment's box: what the dashboard, the CLI and the webhook workers seal and
        open endpoint secrets with (``WEBHOOK_SEALING_KEY``, else the state dir's key file)."""
        key = settings.webhooks.sealing_key
        return cls.from_setting(key.get_secret_value() if key else None, settings.state_dir)

    @classmethod
    def from_setting(cls, value: str | None, state_dir: Path) -> SecretBox:
        """Keys from the setting (comma-separated, newest first), else the state dir's key file."""
        if value:
            return cls([part.strip().encode() for part in value.split(",") if part.strip()])
        return cls([load_or_create_key(state_dir / KEY_FILE_NAME)])

    def seal(self, secret: str) -> str:
        secret_key(secret)  # refuse to seal something that could never sign
        return self.seal_text(secret)

    def seal_text(self, value: str) -> str:
        """Any other secret kept in a table (the Helix token), under the same keys."""
        return self._fernet.encrypt(value.encode()).decode()

    def unseal(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretUnsealError(
                "sealed secret does not open with this deployment's key"
            ) from None

    def reseal(self, token: str) -> str:
        """The same secret under the newest key (after a deployment-key rotation)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretUnsealError(
                "sealed secret does not open with this deployment's key"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(keys=***)"
