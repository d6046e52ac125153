"""The operator audit: who did what, when, why and to which SIMs — a page and ``/api/audit``.

Reads ``projections.audit_queries`` (the ``operator_audit`` projection). Filters: actor,
channel (dashboard, api, run, cli), action, ICCID; newest first, ``older`` pages back.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from dashboard.deps import DashboardDep
from projections.audit_queries import AUDIT_ACTIONS, AUDIT_CHANNELS, AuditPage, audit_page
from projections.audit_queries import audit_actors as known_actors
from projections.read_models import PAGE_SIZE

router = APIRouter()
Text = Annotated[str, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=500)]


def checked(value: str, allowed: tuple[str, ...], what: str) -> str | None:
    if value and value not in allowed:
        raise HTTPException(400, f"unknown {what} {value!r}; known: {', '.join(allowed)}")
    return value or None


async def _page(
    dashboard: DashboardDep,
    *,
    actor: str,
    channel: str,
    action: str,
    iccid: str,
    older: str,
    limit: int = PAGE_SIZE,
) -> AuditPage:
    return await audit_page(
        dashboard.pool,
        actor=actor.strip() or None,
        channel=checked(channel, AUDIT_CHANNELS, "channel"),
        action=checked(action, AUDIT_ACTIONS, "action"),
        iccid=iccid.strip() or None,
        older=older or None,
        limit=limit,
    )


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
async def audit_view(
    *,
    request: Request,
    dashboard: DashboardDep,
    actor: Text = "",
    channel: Text = "",
    action: Text = "",
    iccid: Text = "",
    older: Text = "",
) -> HTMLResponse:
    page = await _page(
        dashboard, actor=actor, channel=channel, action=action, iccid=iccid, older=older
    )
    return dashboard.page(
        request,
        "audit.html",
        page=page,
        actor=actor,
        channel=channel,
        action=action,
        iccid=iccid,
        actors=await known_actors(dashboard.pool),
        channels=AUDIT_CHANNELS,
        actions=AUDIT_ACTIONS,
        nav="audit",
    )


@router.get("/api/audit", tags=["dashboard"])
async def audit_api(
    *,
    dashboard: DashboardDep,
    actor: Text = "",
    channel: Text = "",
    action: Text = "",
    iccid: Text = "",
    older: Text = "",
    limit: Limit = PAGE_SIZE,
) -> AuditPage:
    """Operator commands, newest first; ``older`` (from the previous answer) pages back."""
    return await _page(
        dashboard,
        actor=actor,
        channel=channel,
        action=action,
        iccid=iccid,
        older=older,
        limit=limit,
    )
