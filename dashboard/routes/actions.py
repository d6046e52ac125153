"""The dashboard's controls (POST forms, CSRF-checked): form → ``producers.commands`` → page.

Every control answers with a "requested" page linking to the SIM timelines where the outcome
will appear; nothing here waits for the outcome. A cancel first shows a confirmation page that
asks for the reason (no JavaScript needed), and is only requested once that form comes back.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse

from dashboard.deps import ActorDep, DashboardDep, verify_csrf
from producers.commands import SIM_ACTIONS, CommandRefused, Requested

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])
FormText = Annotated[str, Form(max_length=20_000)]


def selection(checked: list[str] | None, typed: str) -> list[str]:
    """Checkbox values plus ICCIDs typed or pasted (one per line, or comma separated)."""
    found = [*(checked or []), *re.split(r"[\s,;]+", typed)]
    return list(dict.fromkeys(i.strip() for i in found if i.strip()))


@router.post("/sims/actions", response_class=HTMLResponse)
async def sim_action(
    *,
    request: Request,
    dashboard: DashboardDep,
    actor: ActorDep,
    action: Annotated[str, Form()],
    iccid: Annotated[list[str] | None, Form()] = None,
    iccids: FormText = "",
    reason: FormText = "",
    confirm: FormText = "",
) -> HTMLResponse:
    if action not in SIM_ACTIONS:
        raise HTTPException(400, f"unknown action {action!r}")
    chosen = selection(iccid, iccids)
    if not chosen:
        raise HTTPException(400, "Select at least one SIM.")
    if action == "cancel" and (confirm != "yes" or not reason.strip()):
        missing_reason = confirm == "yes"
        return dashboard.page(
            request,
            "confirm_cancel.html",
            status_code=400 if missing_reason else 200,
            iccids=chosen,
            reason=reason,
            missing_reason=missing_reason,
        )
    result = await _requested(dashboard.commands.request(action, chosen, actor, reason or None))
    return dashboard.page(request, "requested.html", result=result)


@router.post("/deliveries/resend", response_class=HTMLResponse)
async def resend_deliveries(
    *,
    request: Request,
    dashboard: DashboardDep,
    actor: ActorDep,
    delivery: Annotated[list[int] | None, Form()] = None,
    reseller_id: FormText = "",
    only_failed: Annotated[bool, Form()] = False,
) -> HTMLResponse:
    result = await _requested(
        dashboard.commands.resend_webhooks(
            actor,
            delivery_ids=delivery or [],
            reseller_id=reseller_id or None,
            only_failed=only_failed,
        )
    )
    return dashboard.page(request, "requested.html", result=result)


async def _requested(command: Awaitable[Requested]) -> Requested:
    """Awaits a command; a refusal (nothing selected, no reason) is the operator's 400."""
    try:
        return await command
    except CommandRefused as err:
        raise HTTPException(400, str(err)) from err
