"""Who is calling the reseller API: a bearer token → its reseller, name and scope.

The token is looked up by its hash (``infra.reseller_tokens``); an unknown, revoked or expired
one gets the same 401, so an answer never tells which tokens exist. A read-only token gets 403
on a write; past its budget a token gets 429 with ``Retry-After``. Every request is logged with
the actor (``reseller:<id>/<token name>``), never the token, and audited as one of the token's
uses (``producers.token_uses``: method and path, counted per flush interval).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

import structlog
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dashboard.reseller_api.rate_limit import RateLimiter, retry_after_header
from dashboard.reseller_api.usage import TokenUsage
from infra.actors import reseller_actor
from infra.clock import Clock
from infra.reseller_tokens import looks_like_token, token_hash
from producers.portal_commands import PortalCommands
from producers.token_uses import TokenUses
from projections.portal_queries import token_by_hash

log = structlog.get_logger("simfleet.reseller_api")
BEARER = HTTPBearer(
    auto_error=False,
    description="a reseller API token (`sfr_…`), issued by the operator: "
    "`Authorization: Bearer sfr_…`",
)
UNAUTHORIZED = "A valid reseller API token is required (Authorization: Bearer sfr_…)."


@dataclass(frozen=True)
class Caller:
    reseller_id: str
    token_id: str
    token_name: str
    scope: str

    @property
    def actor(self) -> str:
        return reseller_actor(self.reseller_id, self.token_name)

    @property
    def may_write(self) -> bool:
        return self.scope == "read-write"


@dataclass(frozen=True)
class Portal:
    """What the reseller API's routes share (one per app, in ``app.state.portal``)."""

    commands: PortalCommands
    limiter: RateLimiter
    clock: Clock
    usage: TokenUsage
    uses: TokenUses
    csrf_secret: bytes  # the dashboard's random server secret: portal forms are signed with it


def get_portal(request: Request) -> Portal:
    return cast(Portal, request.app.state.portal)


PortalDep = Annotated[Portal, Depends(get_portal)]


async def caller_of(portal: Portal, token: str) -> Caller | None:
    """The live token's caller, or None (unknown, revoked, expired, malformed)."""
    if not looks_like_token(token):
        return None
    found = await token_by_hash(portal.commands.pool, token_hash(token))
    if found is None or not found.active(portal.clock.now()):
        return None
    return Caller(found.reseller_id, found.token_id, found.name, found.scope)


def limit(portal: Portal, caller: Caller) -> None:
    wait = portal.limiter.take(caller.token_id)
    if wait is not None:
        raise HTTPException(
            429,
            "Too many requests for this token; retry later.",
            headers={"Retry-After": retry_after_header(wait)},
        )


async def used(portal: Portal, caller: Caller, request: Request) -> None:
    """The token's last use, and this request in the audit of its uses (``TokenUses``)."""
    path = request.url.path
    await portal.usage.used(caller.token_id, path)
    portal.uses.record(caller.reseller_id, caller.token_id, caller.token_name, request.method, path)


async def authenticate(
    request: Request,
    portal: PortalDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Caller:
    caller = await caller_of(portal, bearer.credentials) if bearer else None
    if caller is None:
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    limit(portal, caller)
    await used(portal, caller, request)
    request.state.caller = caller
    log.info(
        "reseller_api_request", actor=caller.actor, method=request.method, path=request.url.path
    )
    return caller


async def writer(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
    if not caller.may_write:
        raise HTTPException(403, "This token is read-only.")
    return caller


ReaderDep = Annotated[Caller, Depends(authenticate)]
WriterDep = Annotated[Caller, Depends(writer)]
