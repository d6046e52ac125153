"""SIM sheet import (CSV/JSON) through ``producers.bulk_import``: a form upload and its API twin.

The form is CSRF-checked; the API takes the file as the raw body (``text/csv`` or
``application/json``), a type no cross-site form can send.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from typing import IO, Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from dashboard.deps import ActorDep, Dashboard, DashboardDep, verify_csrf
from dashboard.security import json_writes_only
from producers.bulk_import import MAX_BYTES, ImportFileError, ImportReport, import_sheet

router = APIRouter()
SHOWN_ISSUES = 500
UPLOAD_LIMIT = MAX_BYTES + 64 * 1024  # the sheet and a multipart form's boundaries and fields


class ImportSummary(BaseModel):
    summary: str
    accepted: list[str]
    events: int
    issues: list[str]


SPOOL_IN_MEMORY = 1024 * 1024  # a larger sheet waits on disk, like a form upload


async def run_import(
    dashboard: Dashboard, sheet: IO[bytes], size: int, name: str, actor: str
) -> ImportReport:
    """Reads the sheet off the event loop, never whole in memory (``import_sheet``)."""
    if size > MAX_BYTES:
        raise HTTPException(413, f"{name}: the sheet is over the limit of {MAX_BYTES:,} bytes")
    try:
        return await import_sheet(sheet, name, dashboard.bus, dashboard.clock, requested_by=actor)
    except ImportFileError as err:
        raise HTTPException(400, f"{name}: {err}") from err


@router.post(
    "/import",
    response_class=HTMLResponse,
    include_in_schema=False,
    dependencies=[Depends(verify_csrf)],
    max_body_size=UPLOAD_LIMIT,
)
async def import_form(
    *,
    request: Request,
    dashboard: DashboardDep,
    actor: ActorDep,
    file: Annotated[UploadFile, File()],
) -> HTMLResponse:
    name = file.filename or file.content_type or "upload"
    report = await run_import(dashboard, file.file, file.size or 0, name, actor)
    # the first of a big sheet's hundreds of thousands of lines: not on the event loop either
    issues = await asyncio.to_thread(lambda: list(itertools.islice(report.issues(), SHOWN_ISSUES)))
    return dashboard.page(
        request,
        "imported.html",
        filename=name,
        report=report,
        issues=issues,
        hidden_issues=max(0, report.issue_count() - SHOWN_ISSUES),
        nav="controls",
    )


@router.post(
    "/api/import",
    tags=["dashboard"],
    dependencies=[Depends(json_writes_only)],
    max_body_size=MAX_BYTES,
)
async def import_api(
    request: Request,
    dashboard: DashboardDep,
    actor: ActorDep,
    filename: Annotated[str, Query(max_length=200, description="tells CSV from JSON")] = "",
) -> ImportSummary:
    """Body: the sheet itself, ``Content-Type: text/csv`` or ``application/json``."""
    hint = filename or request.headers.get("content-type", "")
    with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY) as sheet:
        size = 0
        async for chunk in request.stream():  # the app's BodyLimit caps it while it arrives
            size += len(chunk)
            if size > MAX_BYTES:
                raise HTTPException(413, f"the sheet is over the limit of {MAX_BYTES:,} bytes")
            sheet.write(chunk)
        sheet.seek(0)
        report = await run_import(dashboard, sheet, size, hint, actor)
    return await asyncio.to_thread(
        lambda: ImportSummary(
            summary=report.summary(),
            accepted=list(report.accepted),
            events=report.events,
            issues=list(report.issues()),
        )
    )
