"""Re-enabling a disabled webhook endpoint from the resellers page (POST form, CSRF-checked).

The form offers to redeliver what the endpoint missed (checked when there is something);
``producers.reseller_commands`` emits the enable and, if asked, the resend. Answers with a
redirect back to the resellers page, where the endpoint shows enabled once projected.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException
from fastapi.responses import RedirectResponse

from dashboard.deps import ActorDep, DashboardDep, verify_csrf
from producers.reseller_commands import CommandRejected, NotFound

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])


@router.post("/resellers/{reseller_id}/endpoints/{endpoint_id}/enable")
async def enable_endpoint(
    reseller_id: str,
    endpoint_id: str,
    dashboard: DashboardDep,
    actor: ActorDep,
    redeliver: Annotated[bool, Form()] = False,
) -> RedirectResponse:
    try:
        await dashboard.resellers.enable_endpoint(
            reseller_id, endpoint_id, actor, redeliver=redeliver
        )
    except NotFound as err:
        raise HTTPException(404, str(err)) from err
    except CommandRejected as err:
        raise HTTPException(400, str(err)) from err
    return RedirectResponse(f"/resellers#{reseller_id}", status_code=303)
