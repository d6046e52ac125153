"""JSON API for reseller API tokens, for operators: issue (the token is answered once), list
(never the token, nor its hash) and revoke. Mounted behind the dashboard's Basic auth.

No ``from __future__ import annotations`` here: FastAPI must see the factory's local ``Actor``.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field

from dashboard.api_resellers import Accepted, default_actor
from producers.reseller_commands import CommandRejected, NotFound
from producers.reseller_tokens import MAX_VALID_DAYS, ResellerTokens
from projections.portal_queries import TokenView


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="who or what uses it (audited)")
    scope: Literal["read", "read-write"] = "read"
    valid_days: float | None = Field(
        default=None, gt=0, le=MAX_VALID_DAYS, description="default: RESELLER_API_TOKEN_DAYS"
    )


class TokenIssued(BaseModel):
    reseller_id: str
    token_id: str
    name: str
    scope: str
    expires_at: datetime
    token: str = Field(description="sfr_… — shown this once; hand it to the reseller now")
    event_id: str


def reseller_tokens_api(
    tokens: ResellerTokens,
    *,
    default_days: float,
    actor: Callable[[Request], str] = default_actor,
) -> APIRouter:
    router = APIRouter(prefix="/api/resellers/{reseller_id}/tokens", tags=["reseller tokens"])
    Actor = Annotated[str, Depends(actor)]  # noqa: N806 - a type alias, local to the factory

    @router.get("", summary="A reseller's API tokens (never the tokens themselves)")
    async def list_tokens(reseller_id: str) -> list[TokenView]:
        try:
            return await tokens.tokens(reseller_id)
        except NotFound as err:
            raise HTTPException(404, str(err)) from None

    @router.post("", status_code=status.HTTP_201_CREATED, summary="Issue a token; answers it, once")
    async def issue(
        reseller_id: str, body: NewToken, who: Actor, response: Response
    ) -> TokenIssued:
        try:
            issued = await tokens.issue(
                reseller_id, body.name, body.scope, body.valid_days or default_days, who
            )
        except NotFound as err:
            raise HTTPException(404, str(err)) from None
        except CommandRejected as err:
            raise HTTPException(422, str(err)) from None
        response.headers["cache-control"] = "no-store"
        return TokenIssued(
            reseller_id=issued.reseller_id, token_id=issued.token_id, name=issued.name,
            scope=issued.scope, expires_at=issued.expires_at, token=issued.token,
            event_id=issued.event_id,
        )  # fmt: skip

    @router.delete(
        "/{token_id}", status_code=status.HTTP_202_ACCEPTED, summary="Revoke a token at once"
    )
    async def revoke(
        reseller_id: str,
        token_id: str,
        who: Actor,
        reason: Annotated[str, Query(max_length=500)] = "",
    ) -> Accepted:
        try:
            return Accepted(event_id=await tokens.revoke(reseller_id, token_id, who, reason))
        except NotFound as err:
            raise HTTPException(404, str(err)) from None

    return router
