"""The carrier page (``/carrier``) and its JSON (``GET /api/carrier``): when number sync last ran
and what it changed, SIMs waiting for an operator (a request retried until it was given up, a
SIM whose rotation is parked), the daily rotation's figures and whether rotation is paused."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from dashboard.deps import DashboardDep, load_endpoint_banner
from dashboard.security import json_writes_only
from projections import carrier_queries
from projections.carrier_queries import CarrierStatus

page_router = APIRouter(include_in_schema=False, dependencies=[Depends(load_endpoint_banner)])
api_router = APIRouter(prefix="/api", tags=["dashboard"], dependencies=[Depends(json_writes_only)])


@page_router.get("/carrier", response_class=HTMLResponse)
async def carrier_page(request: Request, dashboard: DashboardDep) -> HTMLResponse:
    status = await carrier_queries.carrier_status(dashboard.pool)
    return dashboard.page(request, "carrier.html", status=status, nav="carrier")


@api_router.get("/carrier")
async def carrier(dashboard: DashboardDep) -> CarrierStatus:
    return await carrier_queries.carrier_status(dashboard.pool)
