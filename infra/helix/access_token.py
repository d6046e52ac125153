"""The one Helix OAuth2 token every process shares (Postgres ``token_cache``).

Single flight twice over: an ``asyncio.Lock`` in the process, then an advisory lock across
processes, each re-reading before fetching, so a fleet of callers asks the token endpoint once.

The row holds the token sealed with the deployment's sealing key (``WEBHOOK_SEALING_KEY``, as
endpoint secrets are): a database dump or a read-only role does not hand out carrier access. A
row that does not open (a plain one from before, another key) is as good as none: refetched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from infra.clock import Clock
from infra.helix.errors import HelixError, HelixUnavailable
from infra.redaction import Redactor
from infra.webhook_signing import SecretBox, SecretUnsealError

CACHE_ROW = "helix"  # token_cache.name of the Helix token
TOKEN_LOCK_KEY = 0x4E11C5  # the advisory lock every process takes to refresh the Helix token
TOKEN_MAX_AGE = timedelta(minutes=30)  # Auth0 says 24 h; 30 min is the original's proven cadence
SELECT_CACHE_ROW = "SELECT access_token, expires_at FROM token_cache WHERE name = $1"
UPSERT_CACHE_ROW = """
INSERT INTO token_cache (name, access_token, expires_at, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (name) DO UPDATE
SET access_token = EXCLUDED.access_token, expires_at = EXCLUDED.expires_at, updated_at = now()
"""


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: datetime


def token_from_grant(reply: Any, fetched_at: datetime, redact: Redactor) -> Token:
    """The token in the token endpoint's answer, set to expire early and within TOKEN_MAX_AGE."""
    value = reply.get("access_token") if isinstance(reply, dict) else None
    if not isinstance(value, str) or not value:
        raise HelixUnavailable("token endpoint answered without an access_token")
    redact.add(value)
    lifetime = min(timedelta(seconds=float(reply.get("expires_in", 86400))), TOKEN_MAX_AGE)
    # refresh a little early, so a token never expires between our check and the call
    return Token(value, fetched_at + lifetime - min(timedelta(seconds=60), lifetime / 10))


class SharedToken:
    """``fetch`` asks the token endpoint (with its retries); it runs under both locks."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        redact: Redactor,
        fetch: Callable[[], Awaitable[Token]],
        box: SecretBox | None = None,
    ) -> None:
        self._pool, self._clock, self._redact, self._fetch = pool, clock, redact, fetch
        self._box = box
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self._failure: tuple[float, HelixError] | None = None

    async def get(self, stale: str | None = None) -> str:
        """A valid token; ``stale`` is one the carrier just refused with 401."""
        if (token := self._usable(self._token, stale)) is not None:
            return token.value
        waiting_since = time.monotonic()
        async with self._lock:  # single flight in this process
            if (token := self._usable(self._token, stale)) is not None:
                return token.value
            failure = self._failure
            if failure is not None and failure[0] >= waiting_since:
                raise failure[1]  # the refresh we waited for just failed: share, don't stampede
            try:
                self._token = await self._shared(stale)
            except HelixError as err:
                self._failure = (time.monotonic(), err)
                raise
            return self._token.value

    def _usable(self, token: Token | None, stale: str | None) -> Token | None:
        if token is None or token.value == stale or token.expires_at <= self._clock.now():
            return None
        self._redact.add(token.value)  # a token read from token_cache is a secret of ours too
        return token

    async def _shared(self, stale: str | None) -> Token:
        """Single flight across processes: advisory lock, re-read, fetch only if still needed."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(SELECT_CACHE_ROW, CACHE_ROW)
            if found := self._usable(self._opened(row), stale):
                return found
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", TOKEN_LOCK_KEY)
                row = await conn.fetchrow(SELECT_CACHE_ROW, CACHE_ROW)
                if found := self._usable(self._opened(row), stale):
                    return found
                token = await self._fetch()
                stored = self._box.seal_text(token.value) if self._box else token.value
                await conn.execute(UPSERT_CACHE_ROW, CACHE_ROW, stored, token.expires_at)
                return token

    def _opened(self, row: asyncpg.Record | None) -> Token | None:
        if row is None:
            return None
        if self._box is None:
            return Token(row[0], row[1])
        try:
            return Token(self._box.unseal(row[0]), row[1])
        except SecretUnsealError:
            return None
