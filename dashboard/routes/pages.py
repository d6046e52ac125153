"""The dashboard's pages (GET): a read query → a template. Filters arrive as query strings."""

from __future__ import annotations

import contextlib
from typing import Annotated, cast

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from dashboard.deps import DashboardDep
from producers.commands import SIM_ACTIONS, refusal
from producers.reseller_commands import CommandRejected
from projections import log_queries, overview_queries, sim_detail_queries, sim_list_queries
from projections.log_queries import DeliveryStatus
from projections.read_models import SIM_STATUSES, SimStatus
from projections.sim_target_queries import SimTarget

router = APIRouter(include_in_schema=False)
DELIVERY_STATUSES = ("pending", "retrying", "delivered", "failed")
Text = Annotated[str, Query(max_length=200)]
# a status once spelled otherwise: links and scripts saved before keep working
FORMER_STATUS_SPELLINGS = {"canceled": "cancelled"}


def sim_status(value: str) -> SimStatus | None:
    value = FORMER_STATUS_SPELLINGS.get(value, value)
    if value and value not in SIM_STATUSES:
        raise HTTPException(400, f"unknown status {value!r}")
    return cast(SimStatus, value) if value else None


def delivery_status(value: str) -> DeliveryStatus | None:
    if value and value not in DELIVERY_STATUSES:
        raise HTTPException(400, f"unknown delivery status {value!r}")
    return cast(DeliveryStatus, value) if value else None


@router.get("/", response_class=HTMLResponse)
async def overview_page(request: Request, dashboard: DashboardDep) -> HTMLResponse:
    stats = await overview_queries.overview(dashboard.pool, dashboard.clock.now())
    lags = await dashboard.lag() if dashboard.lag is not None else None
    return dashboard.page(request, "overview.html", stats=stats, lags=lags, nav="overview")


@router.get("/sims", response_class=HTMLResponse)
async def sims_page(
    *,
    request: Request,
    dashboard: DashboardDep,
    q: Text = "",
    status: Text = "",
    reseller: Text = "",
    silent: bool = False,
    after: Text = "",
    before: Text = "",
) -> HTMLResponse:
    page = await sim_list_queries.sim_page(
        dashboard.pool,
        q=q,
        status=sim_status(status),
        reseller=reseller,
        silent=silent,
        after=after or None,
        before=before or None,
    )
    resellers = await log_queries.resellers(dashboard.pool)
    return dashboard.page(
        request,
        "sims.html",
        page=page,
        q=q,
        status=status,
        reseller=reseller,
        silent=silent,
        statuses=SIM_STATUSES,
        resellers=resellers,
        actions=SIM_ACTIONS,
        sms_count_cap=sim_list_queries.SMS_COUNT_CAP,
        nav="sims",
    )


@router.get("/sims/{iccid}", response_class=HTMLResponse)
async def sim_page(request: Request, dashboard: DashboardDep, iccid: str) -> HTMLResponse:
    detail = await sim_detail_queries.sim_detail(dashboard.pool, iccid)
    if detail is None:
        raise HTTPException(404, f"no SIM with ICCID {iccid}")
    target = SimTarget.model_validate(detail.sim.model_dump())
    # buttons for requests this SIM would refuse are shown disabled, with the reason
    actions = [(action, refusal(action, target)) for action in SIM_ACTIONS]
    return dashboard.page(request, "sim.html", detail=detail, actions=actions, nav="sims")


@router.get("/sms", response_class=HTMLResponse)
async def sms_page(
    *,
    request: Request,
    dashboard: DashboardDep,
    q: Text = "",
    unknown: bool = False,
    older: int | None = None,
) -> HTMLResponse:
    page = await log_queries.sms_page(dashboard.pool, q=q, unknown_only=unknown, older=older)
    return dashboard.page(request, "sms.html", page=page, q=q, unknown=unknown, nav="sms")


@router.get("/deliveries", response_class=HTMLResponse)
async def deliveries_page(
    *,
    request: Request,
    dashboard: DashboardDep,
    status: Text = "",
    reseller: Text = "",
    endpoint: Text = "",
    older: int | None = None,
) -> HTMLResponse:
    page = await log_queries.delivery_page(
        dashboard.pool,
        status=delivery_status(status),
        reseller=reseller,
        endpoint=endpoint,
        older=older,
    )
    return dashboard.page(
        request,
        "deliveries.html",
        page=page,
        status=status,
        reseller=reseller,
        endpoint=endpoint,
        statuses=DELIVERY_STATUSES,
        nav="deliveries",
    )


@router.get("/helix", response_class=HTMLResponse)
async def helix_page(
    *,
    request: Request,
    dashboard: DashboardDep,
    operation: Text = "",
    iccid: Text = "",
    ok: Text = "",
    older: Text = "",
) -> HTMLResponse:
    outcome = {"true": True, "false": False}.get(ok)
    page = await log_queries.helix_page(
        dashboard.pool, operation=operation, iccid=iccid, ok=outcome, older=older or None
    )
    return dashboard.page(
        request,
        "helix.html",
        page=page,
        operation=operation,
        iccid=iccid,
        ok=ok,
        carrier=dashboard.helix is not None,
        nav="helix",
    )


@router.get("/resellers", response_class=HTMLResponse)
async def resellers_page(request: Request, dashboard: DashboardDep) -> HTMLResponse:
    resellers = await log_queries.resellers(dashboard.pool)
    missed = {}  # what re-enabling each disabled endpoint would redeliver
    for r in resellers:
        for e in r.endpoints:
            if not e.enabled:
                with contextlib.suppress(CommandRejected):  # re-enabled meanwhile
                    missed[e.endpoint_id], _ = await dashboard.resellers.missed(r.id, e.endpoint_id)
    return dashboard.page(
        request, "resellers.html", resellers=resellers, missed=missed, nav="resellers"
    )


@router.get("/controls", response_class=HTMLResponse)
async def controls_page(request: Request, dashboard: DashboardDep) -> HTMLResponse:
    resellers = await log_queries.resellers(dashboard.pool)
    return dashboard.page(
        request, "controls.html", resellers=resellers, actions=SIM_ACTIONS, nav="controls"
    )
