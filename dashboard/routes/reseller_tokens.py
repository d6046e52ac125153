"""A reseller's API tokens on the dashboard: list, issue (shown once), revoke — CSRF-checked forms
over ``producers.reseller_tokens``, as the operator (``dashboard:<user>``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dashboard.deps import ActorDep, Dashboard, DashboardDep, load_endpoint_banner, verify_csrf
from producers.reseller_commands import CommandRejected, NotFound
from producers.reseller_tokens import MAX_VALID_DAYS, ResellerTokens

router = APIRouter(include_in_schema=False, dependencies=[Depends(load_endpoint_banner)])
Checked = [Depends(verify_csrf)]


def tokens_of(dashboard: Dashboard) -> ResellerTokens:
    return ResellerTokens(dashboard.resellers, dashboard.clock)


@router.get("/resellers/{reseller_id}/tokens", response_class=HTMLResponse)
async def tokens_page(request: Request, reseller_id: str, dashboard: DashboardDep) -> HTMLResponse:
    try:
        found = await tokens_of(dashboard).tokens(reseller_id)
    except NotFound as err:
        raise HTTPException(404, str(err)) from None
    return dashboard.page(
        request, "reseller_tokens.html", nav="resellers", reseller_id=reseller_id, tokens=found,
        now=dashboard.clock.now(), max_days=MAX_VALID_DAYS,
    )  # fmt: skip


@router.post("/resellers/{reseller_id}/tokens", response_class=HTMLResponse, dependencies=Checked)
async def issue_token(
    *,
    request: Request,
    reseller_id: str,
    dashboard: DashboardDep,
    actor: ActorDep,
    name: Annotated[str, Form(max_length=100)],
    scope: Annotated[Literal["read", "read-write"], Form()] = "read",
    days: Annotated[float, Form(gt=0, le=MAX_VALID_DAYS)] = 90,
) -> HTMLResponse:
    try:
        issued = await tokens_of(dashboard).issue(reseller_id, name, scope, days, actor)
    except NotFound as err:
        raise HTTPException(404, str(err)) from None
    except CommandRejected as err:
        raise HTTPException(400, str(err)) from None
    page = dashboard.page(request, "reseller_token_issued.html", nav="resellers", issued=issued)
    page.headers["cache-control"] = "no-store"
    return page


@router.post("/resellers/{reseller_id}/tokens/{token_id}/revoke", dependencies=Checked)
async def revoke_token(
    reseller_id: str,
    token_id: str,
    dashboard: DashboardDep,
    actor: ActorDep,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> RedirectResponse:
    try:
        await tokens_of(dashboard).revoke(reseller_id, token_id, actor, reason)
    except NotFound as err:
        raise HTTPException(404, str(err)) from None
    return RedirectResponse(f"/resellers/{reseller_id}/tokens", status_code=303)
