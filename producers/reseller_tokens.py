"""Operator intents on reseller API tokens (CLI, dashboard API) → ``reseller.token_*`` events.

A token is returned here once, in clear, to the operator who issued it; the event carries only
its hash (``infra.reseller_tokens``). Refuses an unknown reseller, a name already used by one
of its live tokens (the audit names a token by its name), an expiry in the past or too far off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from events.envelope import new_ref
from events.reseller import ResellerTokenIssued, ResellerTokenRevoked
from infra.clock import Clock
from infra.reseller_tokens import generate_token, new_token_id, token_hash
from producers.reseller_commands import PRODUCER, CommandRejected, NotFound, ResellerCommands
from projections.portal_queries import TokenView, list_tokens
from projections.reseller_queries import get_reseller

MAX_VALID_DAYS = 366
MAX_REASON = 500
Scope = Literal["read", "read-write"]


@dataclass(frozen=True)
class IssuedToken:
    reseller_id: str
    token_id: str
    name: str
    scope: str
    expires_at: datetime
    event_id: str
    token: str = field(repr=False)  # shown once; never logged or stored


class ResellerTokens:
    def __init__(self, commands: ResellerCommands, clock: Clock) -> None:
        self.pool = commands.pool
        self._commands = commands
        self._clock = clock

    async def issue(
        self, reseller_id: str, name: str, scope: Scope, valid_days: float, requested_by: str
    ) -> IssuedToken:
        name = " ".join(name.split())
        if not name or len(name) > 100 or "/" in name:
            raise CommandRejected("a token name is 1-100 characters, without '/'")
        if scope not in ("read", "read-write"):
            raise CommandRejected("scope is 'read' or 'read-write'")
        if not 0 < valid_days <= MAX_VALID_DAYS:
            raise CommandRejected(
                f"a token is valid for more than 0 and at most {MAX_VALID_DAYS} days"
            )
        if await get_reseller(self.pool, reseller_id) is None:
            raise NotFound(f"unknown reseller {reseller_id!r}")
        now = self._clock.now()
        live = [t for t in await list_tokens(self.pool, reseller_id) if t.active(now)]
        if any(t.name == name for t in live):
            raise CommandRejected(f"reseller {reseller_id!r} has a live token named {name!r}")
        token, token_id = generate_token(), new_token_id()
        expires_at = now + timedelta(days=valid_days)
        event = ResellerTokenIssued.create(
            producer=PRODUCER, time=now, reseller_id=reseller_id, token_id=token_id, name=name,
            scope=scope, token_hash=token_hash(token), expires_at=expires_at,
            requested_by=requested_by,
        )  # fmt: skip
        await self._commands.emit(event)
        return IssuedToken(reseller_id, token_id, name, scope, expires_at, event.id, token)

    async def revoke(
        self, reseller_id: str, token_id: str, requested_by: str, reason: str | None = None
    ) -> str:
        tokens = {t.token_id: t for t in await list_tokens(self.pool, reseller_id)}
        if token_id not in tokens:
            raise NotFound(f"reseller {reseller_id!r} has no token {token_id!r}")
        event = ResellerTokenRevoked.create(
            producer=PRODUCER, time=self._clock.now(), reseller_id=reseller_id,
            token_id=token_id, ref=new_ref(), requested_by=requested_by,
            reason=reason.strip()[:MAX_REASON] if reason and reason.strip() else None,
        )  # fmt: skip
        await self._commands.emit(event)
        return event.id

    async def tokens(self, reseller_id: str) -> list[TokenView]:
        if await get_reseller(self.pool, reseller_id) is None:
            raise NotFound(f"unknown reseller {reseller_id!r}")
        return await list_tokens(self.pool, reseller_id)
