"""Reseller API tokens: made here, shown once, kept only as a hash.

A token is ``sfr_`` + 32 random bytes (URL-safe base64). It is stored and published only as its
SHA-256: with 256 bits of entropy nobody can search the hash space, so a slow password hash
(bcrypt, argon2) would only cost CPU on every request, and a key (HMAC) would protect nothing
more while tying every token to a deployment key that must then never rotate, nor differ
between the archive a replay reads and the live system. A lookup by hash is an index scan
whose timing tells an attacker nothing about other tokens.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "sfr_"  # noqa: S105 - the format's prefix (lets secret scanners spot leaks)
TOKEN_BYTES = 32


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def new_token_id() -> str:
    return "tok_" + secrets.token_hex(6)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    """Cheap shape check before any database lookup (a junk header costs nothing)."""
    return value.startswith(TOKEN_PREFIX) and 40 <= len(value) <= 64 and value.isascii()
