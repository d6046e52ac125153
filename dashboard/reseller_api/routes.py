"""The reseller API's routes: parse → one scoped query or command → answer.

The reseller is always the token's; no route takes a reseller id. A resource of another
reseller answers 404 exactly like one that does not exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, Field

from dashboard.api_resellers import Accepted, Enabled, EnableRequest, SecretIssued
from dashboard.reseller_api.auth import PortalDep, ReaderDep, WriterDep
from producers.reseller_commands import WEBHOOK_TYPES, IssuedSecret
from projections import portal_queries as queries
from projections.portal_queries import (
    DeliveryDetail,
    DeliveryPage,
    EndpointView,
    SimView,
    SmsPage,
    SmsView,
)

ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid token"},
    429: {"description": "past this token's request budget; see Retry-After"},
}
router = APIRouter(responses=ANSWERS)
MAX_ID = 2**63 - 1
Limit = Annotated[int, Query(ge=1, le=500, description="rows per page")]
Older = Annotated[int | None, Query(ge=1, le=MAX_ID, description="the previous page's `older`")]
EndpointId = Annotated[str, Path(max_length=64)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "not found (or not yours)"}}


class NewOwnEndpoint(BaseModel):
    url: str = Field(max_length=2000, description="https URL receiving the webhooks")
    event_types: list[str] = Field(
        default_factory=list,
        max_length=10,
        description=f"subset of {list(WEBHOOK_TYPES)}; empty = all",
    )


class RecoverRequest(BaseModel):
    since: datetime = Field(description="resend what failed or was skipped from this time on")
    endpoint_id: str | None = Field(
        default=None, max_length=64, description="only this endpoint; default: all"
    )


class EndpointAnswered(BaseModel):
    message_id: str = Field(description="the test event's webhook-id")
    outcome: str = Field(description="delivered | retryable | rejected | gone | blocked")
    status_code: int | None
    latency_ms: float
    answer: str | None = Field(description="the start of the endpoint's answer")
    error: str | None


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no {what}")


@router.get("/sims", summary="Your SIMs and their numbers", tags=["sims"])
async def list_sims(
    portal: PortalDep,
    caller: ReaderDep,
    number: Annotated[str | None, Query(max_length=20)] = None,
) -> list[SimView]:
    return await queries.sims(portal.commands.pool, caller.reseller_id, number=number)


@router.get("/sims/{iccid}", summary="One of your SIMs", tags=["sims"], responses=NOT_FOUND)
async def get_sim(
    portal: PortalDep, caller: ReaderDep, iccid: Annotated[str, Path(max_length=22)]
) -> SimView:
    found = await queries.sims(portal.commands.pool, caller.reseller_id, iccid=iccid)
    if not found:
        raise not_found("SIM")
    return found[0]


@router.get(
    "/numbers/{number}", summary="The SIM holding one of your numbers", tags=["sims"],
    responses=NOT_FOUND,
)  # fmt: skip
async def get_number(
    portal: PortalDep, caller: ReaderDep, number: Annotated[str, Path(max_length=20)]
) -> SimView:
    found = await queries.sims(portal.commands.pool, caller.reseller_id, number=number)
    if not found:
        raise not_found("number")
    return found[0]


@router.get("/sms", summary="SMS your SIMs received, newest first", tags=["sms"])
async def list_sms(
    *,
    portal: PortalDep,
    caller: ReaderDep,
    number: Annotated[str | None, Query(max_length=20, description="receiving number")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    older: Older = None,
    limit: Limit = 50,
) -> SmsPage:
    return await queries.sms_page(
        portal.commands.pool, caller.reseller_id, number=number, since=since, until=until,
        older=older, limit=limit,
    )  # fmt: skip


@router.get("/sms/{message_id}", summary="One SMS", tags=["sms"], responses=NOT_FOUND)
async def get_sms(
    portal: PortalDep, caller: ReaderDep, message_id: Annotated[str, Path(max_length=200)]
) -> SmsView:
    page = await queries.sms_page(
        portal.commands.pool, caller.reseller_id, message_id=message_id, limit=1
    )
    if not page.rows:
        raise not_found("SMS")
    return page.rows[0]


@router.get("/deliveries", summary="Webhook deliveries, newest first", tags=["deliveries"])
async def list_deliveries(
    *,
    portal: PortalDep,
    caller: ReaderDep,
    state: Annotated[
        Literal["pending", "retrying", "delivered", "failed"] | None, Query(alias="status")
    ] = None,
    endpoint_id: Annotated[str | None, Query(max_length=64)] = None,
    older: Older = None,
    limit: Limit = 50,
) -> DeliveryPage:
    return await queries.delivery_page(
        portal.commands.pool, caller.reseller_id, status=state, endpoint_id=endpoint_id,
        older=older, limit=limit,
    )  # fmt: skip


@router.get(
    "/deliveries/{delivery_id}", summary="One delivery with every attempt", tags=["deliveries"],
    responses=NOT_FOUND,
)  # fmt: skip
async def get_delivery(
    portal: PortalDep, caller: ReaderDep, delivery_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> DeliveryDetail:
    found = await queries.delivery(portal.commands.pool, caller.reseller_id, delivery_id)
    if found is None:
        raise not_found("delivery")
    return found


@router.post(
    "/recover", status_code=status.HTTP_202_ACCEPTED, tags=["deliveries"],
    summary="Resend everything that failed or was skipped since a time, once per message and endpoint",
)  # fmt: skip
async def recover(portal: PortalDep, caller: WriterDep, body: RecoverRequest) -> Accepted:
    event_id = await portal.commands.recover(
        caller.reseller_id, caller.actor, since=body.since, endpoint_id=body.endpoint_id
    )
    return Accepted(event_id=event_id)


@router.get("/endpoints", summary="Your webhook endpoints and their health", tags=["endpoints"])
async def list_endpoints(portal: PortalDep, caller: ReaderDep) -> list[EndpointView]:
    return await queries.endpoints(portal.commands.pool, caller.reseller_id)


@router.post(
    "/endpoints", status_code=status.HTTP_201_CREATED, tags=["endpoints"],
    summary="Add an endpoint; answers its signing secret, once",
)  # fmt: skip
async def add_endpoint(
    portal: PortalDep, caller: WriterDep, body: NewOwnEndpoint, response: Response
) -> SecretIssued:
    issued = await portal.commands.add_endpoint(
        caller.reseller_id, body.url, caller.actor, body.event_types
    )
    return secret_once(issued, response)


@router.get(
    "/endpoints/{endpoint_id}", summary="One endpoint", tags=["endpoints"], responses=NOT_FOUND
)
async def get_endpoint(
    portal: PortalDep, caller: ReaderDep, endpoint_id: EndpointId
) -> EndpointView:
    found = await queries.endpoint(portal.commands.pool, caller.reseller_id, endpoint_id)
    if found is None:
        raise not_found("endpoint")
    return found


@router.delete(
    "/endpoints/{endpoint_id}", status_code=status.HTTP_202_ACCEPTED, tags=["endpoints"],
    summary="Remove an endpoint", responses=NOT_FOUND,
)  # fmt: skip
async def remove_endpoint(
    portal: PortalDep,
    caller: WriterDep,
    endpoint_id: EndpointId,
    reason: Annotated[str | None, Query(max_length=500)] = None,
) -> Accepted:
    event_id = await portal.commands.remove_endpoint(
        caller.reseller_id, endpoint_id, caller.actor, reason
    )
    return Accepted(event_id=event_id)


@router.post(
    "/endpoints/{endpoint_id}/pause", status_code=status.HTTP_202_ACCEPTED, tags=["endpoints"],
    summary="Pause: deliveries are kept, not sent, until resumed (then `recover` sends them)",
    responses=NOT_FOUND,
)  # fmt: skip
async def pause(portal: PortalDep, caller: WriterDep, endpoint_id: EndpointId) -> Accepted:
    return Accepted(
        event_id=await portal.commands.pause(caller.reseller_id, endpoint_id, caller.actor)
    )


@router.post(
    "/endpoints/{endpoint_id}/resume", status_code=status.HTTP_202_ACCEPTED, tags=["endpoints"],
    summary="Resume a paused or disabled endpoint, optionally redelivering what it missed",
    responses=NOT_FOUND,
)  # fmt: skip
async def resume(
    portal: PortalDep, caller: WriterDep, endpoint_id: EndpointId, body: EnableRequest
) -> Enabled:
    done = await portal.commands.resume(
        caller.reseller_id, endpoint_id, caller.actor, redeliver=body.redeliver
    )
    return Enabled(event_id=done.event_id, resend_event_id=done.resend_event_id, missed=done.missed)


@router.post(
    "/endpoints/{endpoint_id}/rotate-secret", tags=["endpoints"], responses=NOT_FOUND,
    summary="New signing secret; the previous one signs too during the overlap (two signatures)",
)  # fmt: skip
async def rotate_secret(
    portal: PortalDep, caller: WriterDep, endpoint_id: EndpointId, response: Response
) -> SecretIssued:
    issued = await portal.commands.rotate_secret(caller.reseller_id, endpoint_id, caller.actor)
    return secret_once(issued, response)


@router.post(
    "/endpoints/{endpoint_id}/test", tags=["endpoints"], responses=NOT_FOUND,
    summary="Send a signed `webhook.test` event now and show the endpoint's answer",
)  # fmt: skip
async def test_send(
    portal: PortalDep, caller: WriterDep, endpoint_id: EndpointId
) -> EndpointAnswered:
    answer = await portal.commands.test_send(caller.reseller_id, endpoint_id)
    return EndpointAnswered(
        message_id=answer.message_id, outcome=answer.outcome, status_code=answer.status_code,
        latency_ms=answer.latency_ms, answer=answer.answer, error=answer.error,
    )  # fmt: skip


def secret_once(issued: IssuedSecret, response: Response) -> SecretIssued:
    response.headers["cache-control"] = "no-store"
    return SecretIssued(
        reseller_id=issued.reseller_id, endpoint_id=issued.endpoint_id, secret=issued.secret,
        previous_valid_until=issued.previous_valid_until, event_id=issued.event_id,
    )  # fmt: skip
