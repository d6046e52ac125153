"""JSON API for resellers, endpoints, SIM assignment and webhook deliveries.

Thin: read through ``projections.reseller_queries``, write through
``producers.reseller_commands``. Authentication is the dashboard app's job (it mounts this
router behind its auth, and puts the ``ResellerCommands`` in ``app.state.reseller_commands``);
``Actor`` names who asked, for the events' ``requested_by``. A signing secret appears in exactly
two answers — endpoint creation and rotation — marked ``no-store``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal, cast

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field

from infra.actors import dashboard_actor
from producers.reseller_commands import (
    WEBHOOK_TYPES,
    CommandRejected,
    IssuedSecret,
    NotFound,
    ResellerCommands,
)
from projections import reseller_queries as queries
from projections.log_queries import DeliveryRow
from projections.reseller_queries import EndpointView, ResellerView

Reason = Annotated[str, Query(max_length=500, description="why (for the operator audit)")]


# one resend request names at most this many messages (a time window covers more)
MAX_RESEND_IDS = 10_000


class NewReseller(BaseModel):
    reseller_id: str = Field(pattern=r"^[a-z0-9_\-]{1,64}$", examples=["acme"])
    name: str = Field(min_length=1, max_length=200)


class NewEndpoint(BaseModel):
    url: str = Field(description="https URL receiving the webhooks", examples=["https://x.io/h"])
    event_types: list[str] = Field(
        default_factory=list,
        max_length=len(WEBHOOK_TYPES),
        description=f"subset of {list(WEBHOOK_TYPES)}; empty = all",
    )
    endpoint_id: str | None = Field(default=None, max_length=64, description="default: generated")


class SecretIssued(BaseModel):
    reseller_id: str
    endpoint_id: str
    secret: str = Field(description="whsec_… — shown this once; store it now")
    previous_valid_until: datetime | None = Field(
        default=None, description="after a rotation: the previous secret signs until then"
    )
    event_id: str


class SimsToAssign(BaseModel):
    iccids: list[str] = Field(min_length=1, max_length=100_000)


class AssignmentResult(BaseModel):
    assigned: int
    errors: list[str]


class ResendRequest(BaseModel):
    message_ids: list[str] = Field(default_factory=list, max_length=MAX_RESEND_IDS)
    endpoint_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    only_failed: bool = False
    reason: str | None = Field(default=None, max_length=500, description="why (for the audit)")


class Accepted(BaseModel):
    event_id: str = Field(description="the event recording the request")


class EnableRequest(BaseModel):
    redeliver: bool = Field(
        default=False, description="send again what it missed (failed, or skipped while disabled)"
    )


class Missed(BaseModel):
    missed: int = Field(description="deliveries that failed or were skipped")
    since: datetime


class Enabled(BaseModel):
    event_id: str
    resend_event_id: str | None = Field(description="the redelivery request, if asked for")
    missed: int


def api_actor(request: Request) -> str:
    """``api:<user>``: the Basic-auth user the dashboard's middleware set (else ``unknown``)."""
    return dashboard_actor(str(getattr(request.state, "operator", None) or "unknown"), "/api/")


def reseller_commands(request: Request) -> ResellerCommands:
    return cast(ResellerCommands, request.app.state.reseller_commands)


Actor = Annotated[str, Depends(api_actor)]
CommandsDep = Annotated[ResellerCommands, Depends(reseller_commands)]
router = APIRouter(prefix="/api/resellers", tags=["resellers"])


@router.get("", summary="List resellers")
async def list_resellers(commands: CommandsDep) -> list[ResellerView]:
    return await queries.list_resellers(commands.pool)


@router.post("", status_code=status.HTTP_202_ACCEPTED, summary="Create a reseller")
async def create_reseller(body: NewReseller, who: Actor, commands: CommandsDep) -> Accepted:
    with refusals():
        return Accepted(event_id=await commands.create_reseller(body.reseller_id, body.name, who))


@router.get("/{reseller_id}/endpoints", summary="List a reseller's webhook endpoints")
async def list_endpoints(reseller_id: str, commands: CommandsDep) -> list[EndpointView]:
    return await queries.list_endpoints(commands.pool, reseller_id)


@router.post(
    "/{reseller_id}/endpoints",
    status_code=status.HTTP_201_CREATED,
    summary="Add an endpoint; answers its signing secret, once",
)
async def add_endpoint(
    reseller_id: str, body: NewEndpoint, who: Actor, response: Response, commands: CommandsDep
) -> SecretIssued:
    with refusals():
        issued = await commands.add_endpoint(
            reseller_id, body.url, who, event_types=body.event_types, endpoint_id=body.endpoint_id
        )
    return _secret_once(issued, response)


@router.delete(
    "/{reseller_id}/endpoints/{endpoint_id}",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Remove an endpoint",
)
async def remove_endpoint(
    reseller_id: str, endpoint_id: str, who: Actor, commands: CommandsDep, reason: Reason = ""
) -> Accepted:
    """Destructive: ``reason`` is required (it is recorded in the operator audit)."""
    with refusals():
        event_id = await commands.remove_endpoint(reseller_id, endpoint_id, who, reason)
    return Accepted(event_id=event_id)


@router.post(
    "/{reseller_id}/endpoints/{endpoint_id}/rotate-secret",
    summary="Rotate the signing secret; the previous one keeps signing during the overlap",
)
async def rotate_secret(
    *,
    reseller_id: str,
    endpoint_id: str,
    who: Actor,
    response: Response,
    commands: CommandsDep,
    reason: Reason = "",
) -> SecretIssued:
    with refusals():
        issued = await commands.rotate_secret(reseller_id, endpoint_id, who, reason)
    return _secret_once(issued, response)


@router.get(
    "/{reseller_id}/endpoints/{endpoint_id}/missed",
    summary="What re-enabling a disabled endpoint would redeliver",
)
async def missed(reseller_id: str, endpoint_id: str, commands: CommandsDep) -> Missed:
    with refusals():
        count, since = await commands.missed(reseller_id, endpoint_id)
    return Missed(missed=count, since=since)


@router.post(
    "/{reseller_id}/endpoints/{endpoint_id}/enable",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Re-enable a disabled endpoint, optionally redelivering what it missed",
)
async def enable_endpoint(
    reseller_id: str, endpoint_id: str, body: EnableRequest, who: Actor, commands: CommandsDep
) -> Enabled:
    with refusals():
        done = await commands.enable_endpoint(
            reseller_id, endpoint_id, who, redeliver=body.redeliver
        )
    return Enabled(event_id=done.event_id, resend_event_id=done.resend_event_id, missed=done.missed)


@router.post("/{reseller_id}/sims", status_code=status.HTTP_202_ACCEPTED, summary="Assign SIMs")
async def assign_sims(
    reseller_id: str, body: SimsToAssign, who: Actor, commands: CommandsDep
) -> AssignmentResult:
    with refusals():
        done = await commands.assign_sims(reseller_id, body.iccids, who)
    return AssignmentResult(assigned=len(done.assigned), errors=done.errors)


@router.get("/{reseller_id}/deliveries", summary="Recent webhook deliveries")
async def list_deliveries(
    reseller_id: str,
    commands: CommandsDep,
    state: Annotated[
        Literal["pending", "retrying", "delivered", "failed"] | None, Query(alias="status")
    ] = None,
    endpoint_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryRow]:
    return await queries.list_deliveries(
        commands.pool, reseller_id, status=state, endpoint_id=endpoint_id, limit=limit
    )


@router.post(
    "/{reseller_id}/deliveries/resend",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Deliver again: by message ids, by endpoint and time range, or every failed one",
)
async def resend(
    reseller_id: str, body: ResendRequest, who: Actor, commands: CommandsDep
) -> Accepted:
    with refusals():
        event_id = await commands.resend(
            reseller_id,
            who,
            message_ids=body.message_ids,
            endpoint_id=body.endpoint_id,
            since=body.since,
            until=body.until,
            only_failed=body.only_failed,
            reason=body.reason,
        )
    return Accepted(event_id=event_id)


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """Command refusals → 404 (unknown reseller/endpoint) or 422 (the request as asked)."""
    try:
        yield
    except NotFound as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(err)) from None
    except CommandRejected as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err)) from None


def _secret_once(issued: IssuedSecret, response: Response) -> SecretIssued:
    response.headers["cache-control"] = "no-store"
    return SecretIssued(
        reseller_id=issued.reseller_id,
        endpoint_id=issued.endpoint_id,
        secret=issued.secret,
        previous_valid_until=issued.previous_valid_until,
        event_id=issued.event_id,
    )
