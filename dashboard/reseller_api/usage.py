"""When each token was last used: ``reseller_token_uses`` (the one table the reseller API writes).

Written at most once per ``every_s`` per token in this process, so a busy token costs one
UPDATE a minute, not one per request; the log line of every request stays the full record.
"""

from __future__ import annotations

import time

import asyncpg

from infra.clock import Clock

TOUCH = """
INSERT INTO reseller_token_uses (token_id, last_used_at, last_path) VALUES ($1, $2, $3)
ON CONFLICT (token_id) DO UPDATE SET last_used_at = greatest(reseller_token_uses.last_used_at,
    EXCLUDED.last_used_at), last_path = EXCLUDED.last_path
"""
MAX_REMEMBERED = 10_000


class TokenUsage:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, every_s: float = 60.0) -> None:
        self._pool = pool
        self._clock = clock
        self._every_s = every_s
        self._written: dict[str, float] = {}

    async def used(self, token_id: str, path: str) -> None:
        now = time.monotonic()
        if now - self._written.get(token_id, -self._every_s) < self._every_s:
            return
        if len(self._written) >= MAX_REMEMBERED:
            self._written.clear()
        self._written[token_id] = now
        await self._pool.execute(TOUCH, token_id, self._clock.now(), path[:200])
