"""The JSON API: the pages' reads and the controls' commands, for scripts (in the OpenAPI doc).

Resellers and their endpoints are served by ``dashboard.api_resellers`` (``/api/resellers``).

Same Basic auth as the pages. Writes take JSON only (see ``dashboard.security``), so a
cross-site form cannot reach them with the browser's cached credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from dashboard.deps import ActorDep, DashboardDep
from dashboard.routes.pages import delivery_status, sim_status
from dashboard.security import json_writes_only
from producers.commands import (
    MAX_SELECTION,
    SIM_ACTIONS,
    CommandRefused,
    Requested,
    SimAction,
)
from projections import log_queries, overview_queries, sim_detail_queries, sim_list_queries
from projections.log_queries import DeliveryPage, HelixPage, SmsPage
from projections.overview_queries import Overview
from projections.read_models import PAGE_SIZE
from projections.sim_detail_queries import SimDetail
from projections.sim_list_queries import SimPage

router = APIRouter(prefix="/api", tags=["dashboard"], dependencies=[Depends(json_writes_only)])
Text = Annotated[str, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=500)]


class SimCommand(BaseModel):
    iccids: list[str] = Field(min_length=1, max_length=MAX_SELECTION)
    reason: str | None = Field(default=None, description="required for cancel")


class ResendCommand(BaseModel):
    delivery_ids: list[int] = Field(default_factory=list, max_length=MAX_SELECTION)
    reseller_id: str | None = Field(default=None, description="resend this reseller's history")
    only_failed: bool = False


@router.get("/overview")
async def overview(dashboard: DashboardDep) -> Overview:
    return await overview_queries.overview(dashboard.pool, dashboard.clock.now())


@router.get("/sims")
async def sims(
    *,
    dashboard: DashboardDep,
    q: Text = "",
    status: Text = "",
    reseller: Text = "",
    silent: bool = False,
    after: Text = "",
    before: Text = "",
    limit: Limit = PAGE_SIZE,
) -> SimPage:
    return await sim_list_queries.sim_page(
        dashboard.pool,
        q=q,
        status=sim_status(status),
        reseller=reseller,
        silent=silent,
        after=after or None,
        before=before or None,
        limit=limit,
    )


@router.get("/sims/{iccid}")
async def sim(dashboard: DashboardDep, iccid: str) -> SimDetail:
    detail = await sim_detail_queries.sim_detail(dashboard.pool, iccid)
    if detail is None:
        raise HTTPException(404, f"no SIM with ICCID {iccid}")
    return detail


def _sim_action(action: SimAction) -> Callable[..., Awaitable[Requested]]:
    async def request_sim_action(
        dashboard: DashboardDep, actor: ActorDep, command: SimCommand
    ) -> Requested:
        try:
            return await dashboard.commands.request(action, command.iccids, actor, command.reason)
        except CommandRefused as err:
            raise HTTPException(400, str(err)) from err

    return request_sim_action


# One fixed path per action rather than POST /sims/{action}: a template beside GET /sims/{iccid}
# would make two equivalent paths in the OpenAPI document, ambiguous to clients generated from it.
for _action in SIM_ACTIONS:
    router.add_api_route(
        f"/sims/{_action}",
        _sim_action(_action),
        methods=["POST"],
        operation_id=f"request_sim_{_action}",
        summary=f"Request {_action} for SIMs",
        description=f"Publishes the {_action} request event for each eligible SIM.",
    )


@router.get("/sms")
async def sms(
    *,
    dashboard: DashboardDep,
    q: Text = "",
    unknown_only: bool = False,
    older: int | None = None,
    limit: Limit = PAGE_SIZE,
) -> SmsPage:
    return await log_queries.sms_page(
        dashboard.pool, q=q, unknown_only=unknown_only, older=older, limit=limit
    )


@router.get("/deliveries")
async def deliveries(
    *,
    dashboard: DashboardDep,
    status: Text = "",
    reseller: Text = "",
    endpoint: Text = "",
    older: int | None = None,
    limit: Limit = PAGE_SIZE,
) -> DeliveryPage:
    return await log_queries.delivery_page(
        dashboard.pool,
        status=delivery_status(status),
        reseller=reseller,
        endpoint=endpoint,
        older=older,
        limit=limit,
    )


@router.post("/deliveries/resend")
async def resend(dashboard: DashboardDep, actor: ActorDep, command: ResendCommand) -> Requested:
    try:
        return await dashboard.commands.resend_webhooks(
            actor,
            delivery_ids=command.delivery_ids,
            reseller_id=command.reseller_id,
            only_failed=command.only_failed,
        )
    except CommandRefused as err:
        raise HTTPException(400, str(err)) from err


@router.get("/helix")
async def helix(
    *,
    dashboard: DashboardDep,
    operation: Text = "",
    iccid: Text = "",
    ok: bool | None = None,
    older: Text = "",
    limit: Limit = PAGE_SIZE,
) -> HelixPage:
    return await log_queries.helix_page(
        dashboard.pool,
        operation=operation,
        iccid=iccid,
        ok=ok,
        older=older or None,
        limit=limit,
    )
