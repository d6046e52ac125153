"""SIM sheet import (CSV/JSON) through ``producers.bulk_import``: a form upload and its API twin.

The form is CSRF-checked; the API takes the file as the raw body (``text/csv`` or
``application/json``), a type no cross-site form can send.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from dashboard.deps import ActorDep, Dashboard, DashboardDep, verify_csrf
from dashboard.security import json_writes_only
from producers.bulk_import import MAX_BYTES, ImportFileError, ImportReport, import_sims, parse_rows

router = APIRouter()
SHOWN_ISSUES = 500


class ImportSummary(BaseModel):
    summary: str
    accepted: list[str]
    events: int
    issues: list[str]


async def run_import(dashboard: Dashboard, data: bytes, name: str, actor: str) -> ImportReport:
    try:
        parsed = parse_rows(data, name, max_bytes=MAX_BYTES)
    except ImportFileError as err:
        raise HTTPException(400, f"{name}: {err}") from err
    return await import_sims(parsed, dashboard.bus, dashboard.clock, requested_by=actor)


@router.post(
    "/import",
    response_class=HTMLResponse,
    include_in_schema=False,
    dependencies=[Depends(verify_csrf)],
)
async def import_form(
    *,
    request: Request,
    dashboard: DashboardDep,
    actor: ActorDep,
    file: Annotated[UploadFile, File()],
) -> HTMLResponse:
    name = file.filename or file.content_type or "upload"
    report = await run_import(dashboard, await file.read(MAX_BYTES + 1), name, actor)
    issues = list(report.issues())
    return dashboard.page(
        request,
        "imported.html",
        filename=name,
        report=report,
        issues=issues[:SHOWN_ISSUES],
        hidden_issues=max(0, len(issues) - SHOWN_ISSUES),
        nav="controls",
    )


@router.post("/api/import", tags=["dashboard"], dependencies=[Depends(json_writes_only)])
async def import_api(
    request: Request,
    dashboard: DashboardDep,
    actor: ActorDep,
    filename: Annotated[str, Query(max_length=200, description="tells CSV from JSON")] = "",
) -> ImportSummary:
    """Body: the sheet itself, ``Content-Type: text/csv`` or ``application/json``."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BYTES:
            raise HTTPException(413, f"the sheet is over the limit of {MAX_BYTES:,} bytes")
    hint = filename or request.headers.get("content-type", "")
    report = await run_import(dashboard, bytes(data), hint, actor)
    return ImportSummary(
        summary=report.summary(),
        accepted=list(report.accepted),
        events=len(report.event_ids),
        issues=list(report.issues()),
    )
