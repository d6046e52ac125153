"""JSON API for reseller API tokens, for operators: issue (the token is answered once), list
(never the token, nor its hash) and revoke. Mounted behind the dashboard's Basic auth; a
reseller or token the commands do not know is a 404 (``dashboard.api_resellers.refusals``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, cast

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, Field

from dashboard.api_resellers import Accepted, Actor, refusals
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


@dataclass(frozen=True)
class TokenDesk:
    """What the token routes use (``app.state.reseller_tokens``)."""

    tokens: ResellerTokens
    default_days: float  # RESELLER_API_TOKEN_DAYS


def token_desk(request: Request) -> TokenDesk:
    return cast(TokenDesk, request.app.state.reseller_tokens)


DeskDep = Annotated[TokenDesk, Depends(token_desk)]
router = APIRouter(prefix="/api/resellers/{reseller_id}/tokens", tags=["reseller tokens"])


@router.get("", summary="A reseller's API tokens (never the tokens themselves)")
async def list_tokens(reseller_id: str, desk: DeskDep) -> list[TokenView]:
    with refusals():
        return await desk.tokens.tokens(reseller_id)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Issue a token; answers it, once")
async def issue(
    reseller_id: str, body: NewToken, who: Actor, response: Response, desk: DeskDep
) -> TokenIssued:
    with refusals():
        issued = await desk.tokens.issue(
            reseller_id, body.name, body.scope, body.valid_days or desk.default_days, who
        )
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
    desk: DeskDep,
    reason: Annotated[str, Query(max_length=500)] = "",
) -> Accepted:
    with refusals():
        return Accepted(event_id=await desk.tokens.revoke(reseller_id, token_id, who, reason))
