"""Every use of a reseller API token → ``reseller.token_used`` on ``reseller.usage``, coalesced.

A request through ``/reseller/v1`` or ``/portal`` is recorded in memory (cheap, no I/O on the
request's path); every ``flush_s`` the batch of each token used since the last flush becomes one
event counting its requests per method and path. A busy token thus costs one event per interval
however many requests it makes, and the operator audit (``projections.audit``) still shows every
path it called and how often. A batch reaching ``MAX_PATHS`` distinct paths is closed early (the
next one starts), so an event stays small and no path is lost.

What could not be published (Kafka down) waits for the next flush, up to ``MAX_WAITING`` batches;
past that the oldest are dropped with an error line saying how many requests went unaudited.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from events.envelope import Event, new_ref
from events.reseller import ResellerTokenUsed
from infra.actors import reseller_actor
from infra.clock import Clock

PRODUCER = "simfleet/reseller-api"
MAX_PATHS = 100
MAX_PATH_CHARS = 300
MAX_TOKENS_OPEN = 10_000
MAX_WAITING = 1_000
log = structlog.get_logger("simfleet.token_uses")


@dataclass
class _Use:
    requests: int
    first_at: datetime
    last_at: datetime


@dataclass
class _Batch:
    reseller_id: str
    token_id: str
    token_name: str
    requests: int = 0
    uses: dict[tuple[str, str], _Use] = field(default_factory=dict)

    def add(self, method: str, path: str, at: datetime) -> None:
        self.requests += 1
        use = self.uses.get((method, path))
        if use is None:
            self.uses[method, path] = _Use(1, at, at)
        else:
            use.requests += 1
            use.last_at = at

    def event(self, at: datetime) -> ResellerTokenUsed:
        return ResellerTokenUsed.create(
            producer=PRODUCER, time=at, reseller_id=self.reseller_id, token_id=self.token_id,
            token_name=self.token_name,
            requested_by=reseller_actor(self.reseller_id, self.token_name), ref=new_ref(),
            requests=self.requests,
            uses=[
                {"method": m, "path": p, "requests": u.requests, "first_at": u.first_at,
                 "last_at": u.last_at}
                for (m, p), u in self.uses.items()
            ],
        )  # fmt: skip


class TokenUses:
    def __init__(
        self, emit: Callable[[Event], Awaitable[None]], clock: Clock, flush_s: float
    ) -> None:
        self._emit = emit
        self._clock = clock
        self.flush_s = flush_s
        self._open: dict[str, _Batch] = {}
        self._waiting: deque[ResellerTokenUsed] = deque()

    def record(
        self, reseller_id: str, token_id: str, token_name: str, method: str, path: str
    ) -> None:
        """One request by the token (already authenticated); no I/O."""
        now = self._clock.now()
        batch = self._open.get(token_id)
        if batch is None:
            if len(self._open) >= MAX_TOKENS_OPEN:
                self._close_all(now)
            batch = self._open[token_id] = _Batch(reseller_id, token_id, token_name)
        batch.add(method[:10], path[:MAX_PATH_CHARS], now)
        if len(batch.uses) >= MAX_PATHS:
            self._wait(self._open.pop(token_id).event(now))

    async def flush(self) -> int:
        """Publishes every batch so far; the events published. Kafka refusing keeps the rest."""
        self._close_all(self._clock.now())
        sent = 0
        while self._waiting:
            event = self._waiting[0]
            try:
                await self._emit(event)
            except Exception as exc:  # Kafka unavailable: the batches wait for the next flush
                log.warning("token_uses_not_published", waiting=len(self._waiting), error=str(exc))
                break
            self._waiting.popleft()
            sent += 1
        return sent

    async def run(self) -> None:
        """Flushes every ``flush_s`` for as long as the dashboard runs (supervised)."""
        while True:
            await asyncio.sleep(self.flush_s)
            await self.flush()

    def _close_all(self, now: datetime) -> None:
        for batch in self._open.values():
            self._wait(batch.event(now))
        self._open.clear()

    def _wait(self, event: ResellerTokenUsed) -> None:
        if len(self._waiting) >= MAX_WAITING:
            dropped = self._waiting.popleft()
            log.error(
                "token_uses_dropped",
                actor=dropped.data.requested_by,
                requests=dropped.data.requests,
                reason="Kafka unavailable for too long",
            )
        self._waiting.append(event)
