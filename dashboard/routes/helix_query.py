"""The Helix page's carrier lookups (``dashboard.helix_query``): POST forms (CSRF-checked, since
each calls the carrier) answered with a page, and their JSON twins under ``/api/helix``.

The API twins are POSTs too, taking JSON only: a lookup costs a carrier call, so no cross-site
page may trigger one with the operator's cached credentials (a GET could be an ``<img>``).
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse

from dashboard import helix_query
from dashboard.deps import ActorDep, DashboardDep, verify_csrf
from dashboard.helix_query import DetailsAnswer, DetailsQuery, ReasonCodesAnswer
from dashboard.security import json_writes_only

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])
api_router = APIRouter(
    prefix="/api/helix", tags=["helix"], dependencies=[Depends(json_writes_only)]
)
# the original dashboard's path, kept for the scripts that call it
legacy_router = APIRouter(tags=["helix"], dependencies=[Depends(json_writes_only)])
RUN_ID_HEADER = "x-simfleet-run-id"
FormText = Annotated[str, Form(max_length=64)]


def pretty(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


@router.post("/helix/details", response_class=HTMLResponse)
async def details_form(
    *,
    request: Request,
    dashboard: DashboardDep,
    actor: ActorDep,
    subscription_id: FormText = "",
    iccid: FormText = "",
) -> HTMLResponse:
    query = DetailsQuery(subscription_id=subscription_id, iccid=iccid)
    answer = await helix_query.details(dashboard, query, actor)
    return dashboard.page(
        request,
        "helix_answer.html",
        details=answer,
        reason_codes=None,
        body=pretty(answer.details),
        operation=helix_query.DETAILS_OPERATION,
        nav="helix",
    )


@router.post("/helix/reason-codes", response_class=HTMLResponse)
async def reason_codes_form(
    request: Request, dashboard: DashboardDep, actor: ActorDep
) -> HTMLResponse:
    answer = await helix_query.reason_codes(dashboard, actor)
    return dashboard.page(
        request,
        "helix_answer.html",
        details=None,
        reason_codes=answer.reason_codes,
        body=pretty(answer.reason_codes),
        operation="reason_codes",
        nav="helix",
    )


@api_router.post("/details")
async def details_api(
    dashboard: DashboardDep, actor: ActorDep, query: DetailsQuery
) -> DetailsAnswer:
    """Asks the carrier for a subscriber's details (by ``subscription_id`` or ``iccid``); the
    call is audited in the Helix log. 404: no such SIM or subscription; 502/503: the carrier
    refused or did not answer; 503 also when this process has no carrier client."""
    return await helix_query.details(dashboard, query, actor)


@api_router.post("/reason-codes")
async def reason_codes_api(dashboard: DashboardDep, actor: ActorDep) -> ReasonCodesAnswer:
    """Asks the carrier for its reason-code table (``Content-Type: application/json``, no body
    needed); the call is audited in the Helix log."""
    return await helix_query.reason_codes(dashboard, actor)


@legacy_router.post(
    "/api/helix-query",
    responses={200: {"description": "the carrier's details answer as received (secrets masked)"}},
)
async def helix_query_api(
    dashboard: DashboardDep, actor: ActorDep, query: DetailsQuery
) -> JSONResponse:
    """The original dashboard's lookup: ``{"subscription_id"}`` (or ``mobilitySubscriptionId``)
    or ``{"iccid"}`` → the carrier's details answer exactly as it came, every field kept. Header
    ``x-simfleet-run-id`` names the run, as the Helix log's ``run_id`` does. Errors as for
    ``/api/helix/details``."""
    found = await helix_query.query(dashboard, query, actor)
    return JSONResponse(found.answer, headers={RUN_ID_HEADER: found.run_id})
