"""``/api/run/{action}``: the original workers' "run" endpoints, kept for existing automation.

Each action has its own secret (activate = BULK_RUN_SECRET, finalize = FINALIZER_RUN_SECRET,
rotate = ADMIN_RUN_SECRET, sync = SYNC_SECRET, cancel = CANCEL_SECRET), offered as
``Authorization: Bearer <secret>`` or, as the old cron jobs do, ``?secret=<secret>`` (refused
with ``SIMFLEET_SECRETS_IN_URLS=false``: URLs end up in logs and proxies). An unset secret
disables its action (503), production included. GET is accepted because the old automation
used it.

A run publishes the same ``*.requested`` events as the dashboard for up to ``limit`` SIMs the
worker would have picked (activate: pending, not already queued or in flight; finalize:
provisioning or error; rotate: active and due; sync: active, suspended or error). Cancel picks
nothing itself: it needs explicit ``iccids``. The audit names the caller by the secret's variable
(``run:BULK_RUN_SECRET``): who holds a secret is not known here.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dashboard.deps import DashboardDep
from infra.actors import run_actor
from producers.commands import MAX_SELECTION, CommandRefused, Requested

router = APIRouter(prefix="/api/run", tags=["run"])
BEARER = HTTPBearer(
    auto_error=False, scheme_name="runSecretBearer", description="the action's secret"
)
RunEndpoint = Literal["activate", "finalize", "rotate", "sync", "cancel"]
SECRET_VARIABLES: dict[RunEndpoint, str] = {
    "activate": "BULK_RUN_SECRET",
    "finalize": "FINALIZER_RUN_SECRET",
    "rotate": "ADMIN_RUN_SECRET",
    "sync": "SYNC_SECRET",
    "cancel": "CANCEL_SECRET",
}


def authorize(action: RunEndpoint, expected: str, offered: tuple[str | None, ...]) -> None:
    if not expected:
        raise HTTPException(503, f"{SECRET_VARIABLES[action]} is not set: run/{action} is off")
    if not any(o and hmac.compare_digest(o.encode(), expected.encode()) for o in offered):
        raise HTTPException(401, "wrong or missing secret", {"WWW-Authenticate": "Bearer"})


@router.post("/{action}", operation_id="run_action")
@router.get("/{action}", operation_id="run_action_by_get", description="legacy cron jobs")
async def run(
    *,
    dashboard: DashboardDep,
    action: RunEndpoint,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    secret: Annotated[str | None, Query(description="the action's secret (legacy)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SELECTION)] = 25,
    iccids: Annotated[
        list[str] | None, Query(description="cancel: repeat or comma-separate")
    ] = None,
    reason: Annotated[str, Query(max_length=500)] = "requested via /api/run/cancel",
) -> Requested:
    in_url = secret if dashboard.run_secret_in_url else None
    authorize(
        action, dashboard.run_secrets[action], (in_url, bearer.credentials if bearer else None)
    )
    actor = run_actor(SECRET_VARIABLES[action])  # the secret's name, never the secret
    chosen = [i for value in iccids or [] for i in value.split(",") if i.strip()]
    if len(chosen) > limit:
        raise HTTPException(400, f"{len(chosen)} ICCIDs given but limit is {limit}")
    try:
        if action == "cancel":
            return await dashboard.commands.request("cancel", chosen, actor, reason)
        return await dashboard.commands.run(action, limit, actor)
    except CommandRefused as err:
        raise HTTPException(400, str(err)) from err
