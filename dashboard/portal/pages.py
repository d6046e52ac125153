"""The portal's pages: a reseller's numbers, SMS, deliveries (with attempts), endpoints and its
tokens' activity, and the forms behind its buttons (test send, pause, resume, rotate, add,
recover)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dashboard.portal.deps import (
    DELIVERY_STATUSES,
    SessionDep,
    Text,
    WriterDep,
    portal_of,
    render,
    utc,
)
from dashboard.portal.session import sign_in, sign_out
from dashboard.reseller_api.auth import caller_of
from infra.actors import reseller_actor
from projections import portal_queries as queries
from projections.audit_queries import audit_page

router = APIRouter(include_in_schema=False)
EndpointId = Annotated[str, Path(max_length=64)]
MAX_ID = 2**63 - 1


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    return render(request, "login.html", message="")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, token: Annotated[str, Form(max_length=200)]) -> Response:
    token = token.strip()
    if await caller_of(portal_of(request), token) is None:
        message = "That token is not valid (unknown, revoked or expired)."
        return render(request, "login.html", status_code=401, message=message)
    answer = RedirectResponse("/portal/", status_code=303)
    sign_in(answer, request, token)
    return answer


@router.post("/logout")
async def logout(request: Request, _session: WriterDep) -> Response:
    answer = RedirectResponse("/portal/login", status_code=303)
    sign_out(answer, request)
    return answer


@router.get("/", response_class=HTMLResponse)
async def numbers_page(request: Request, session: SessionDep) -> HTMLResponse:
    sims = await queries.sims(portal_of(request).commands.pool, session.caller.reseller_id)
    return render(request, "numbers.html", nav="numbers", sims=sims)


@router.get("/sms", response_class=HTMLResponse)
async def sms_page(
    *, request: Request, session: SessionDep, number: Text = "", since: Text = "",
    until: Text = "", older: int | None = None,
) -> HTMLResponse:  # fmt: skip
    page = await queries.sms_page(
        portal_of(request).commands.pool, session.caller.reseller_id, number=number or None,
        since=utc(since), until=utc(until), older=_cursor(older),
    )  # fmt: skip
    return render(request, "sms.html", nav="sms", page=page, number=number, since=since,
                  until=until)  # fmt: skip


@router.get("/deliveries", response_class=HTMLResponse)
async def deliveries_page(
    *, request: Request, session: SessionDep, status: Text = "", endpoint_id: Text = "",
    older: int | None = None,
) -> HTMLResponse:  # fmt: skip
    if status and status not in DELIVERY_STATUSES:
        raise HTTPException(400, f"unknown delivery status {status!r}")
    page = await queries.delivery_page(
        portal_of(request).commands.pool, session.caller.reseller_id, status=status or None,
        endpoint_id=endpoint_id or None, older=_cursor(older),
    )  # fmt: skip
    return render(request, "deliveries.html", nav="deliveries", page=page, status=status,
                  endpoint_id=endpoint_id, statuses=DELIVERY_STATUSES)  # fmt: skip


@router.get("/deliveries/{delivery_id}", response_class=HTMLResponse)
async def delivery_page(
    request: Request, session: SessionDep, delivery_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> HTMLResponse:
    detail = await queries.delivery(
        portal_of(request).commands.pool, session.caller.reseller_id, delivery_id
    )
    if detail is None:
        raise HTTPException(404, "no such delivery")
    return render(request, "delivery.html", nav="deliveries", detail=detail)


@router.get("/endpoints", response_class=HTMLResponse)
async def endpoints_page(request: Request, session: SessionDep) -> HTMLResponse:
    found = await queries.endpoints(portal_of(request).commands.pool, session.caller.reseller_id)
    return render(request, "endpoints.html", nav="endpoints", endpoints=found,
                  writable=session.caller.may_write)  # fmt: skip


@router.get("/activity", response_class=HTMLResponse)
async def activity_page(
    request: Request, session: SessionDep, token: Text = "", older: Text = ""
) -> HTMLResponse:
    """What this reseller's tokens did: each change, and each use (method, path, how often)."""
    reseller_id = session.caller.reseller_id
    pool = portal_of(request).commands.pool
    # the query keeps to this reseller's own actors whatever the filter says
    actor = reseller_actor(reseller_id, token) if token else None
    page = await audit_page(pool, reseller_id=reseller_id, actor=actor, older=older or None)
    names = [t.name for t in await queries.list_tokens(pool, reseller_id)]
    return render(request, "activity.html", nav="activity", page=page, token=token,
                  token_names=names, own=reseller_actor(reseller_id, ""))  # fmt: skip


@router.post("/endpoints/{endpoint_id}/test", response_class=HTMLResponse)
async def test_send(request: Request, session: WriterDep, endpoint_id: EndpointId) -> HTMLResponse:
    answer = await portal_of(request).commands.test_send(session.caller.reseller_id, endpoint_id)
    return done(request, f"Test event sent to {endpoint_id}", answer=answer)


@router.post("/endpoints/{endpoint_id}/pause", response_class=HTMLResponse)
async def pause(request: Request, session: WriterDep, endpoint_id: EndpointId) -> HTMLResponse:
    caller = session.caller
    await portal_of(request).commands.pause(caller.reseller_id, endpoint_id, caller.actor)
    return done(request, f"{endpoint_id} paused",
                "Messages are kept, not sent, until you resume it.")  # fmt: skip


@router.post("/endpoints/{endpoint_id}/resume", response_class=HTMLResponse)
async def resume(
    request: Request,
    session: WriterDep,
    endpoint_id: EndpointId,
    redeliver: Annotated[bool, Form()] = False,
) -> HTMLResponse:
    caller = session.caller
    resumed = await portal_of(request).commands.resume(
        caller.reseller_id, endpoint_id, caller.actor, redeliver=redeliver
    )
    sent = f"{resumed.missed} missed message(s) will be sent again." if redeliver else ""
    return done(request, f"{endpoint_id} resumed", sent)


@router.post("/endpoints/{endpoint_id}/rotate-secret", response_class=HTMLResponse)
async def rotate(request: Request, session: WriterDep, endpoint_id: EndpointId) -> HTMLResponse:
    caller = session.caller
    issued = await portal_of(request).commands.rotate_secret(
        caller.reseller_id, endpoint_id, caller.actor
    )
    until = issued.previous_valid_until
    note = f"Both secrets sign until {until:%Y-%m-%d %H:%M} UTC." if until else ""
    return done(request, f"New secret for {endpoint_id}", note, secret=issued.secret)


@router.post("/endpoints", response_class=HTMLResponse)
async def add_endpoint(
    request: Request, session: WriterDep, url: Annotated[str, Form(max_length=2000)]
) -> HTMLResponse:
    caller = session.caller
    issued = await portal_of(request).commands.add_endpoint(
        caller.reseller_id, url.strip(), caller.actor, []
    )
    return done(request, f"Endpoint {issued.endpoint_id} added", secret=issued.secret)


@router.post("/recover", response_class=HTMLResponse)
async def recover(
    request: Request,
    session: WriterDep,
    since: Annotated[str, Form(max_length=40)],
    endpoint_id: Annotated[str, Form(max_length=64)] = "",
) -> HTMLResponse:
    caller, start = session.caller, utc(since)
    if start is None:
        raise HTTPException(400, "say since when")
    await portal_of(request).commands.recover(
        caller.reseller_id, caller.actor, since=start, endpoint_id=endpoint_id or None
    )
    return done(request, "Recovery requested",
                f"Everything that failed or was skipped since {start:%Y-%m-%d %H:%M} UTC "
                "is sent again, once per message and endpoint.")  # fmt: skip


def done(request: Request, heading: str, *lines: str, **context: object) -> HTMLResponse:
    answer = render(request, "done.html", heading=heading, lines=[ln for ln in lines if ln],
                    secret=context.get("secret"), answer=context.get("answer"))  # fmt: skip
    answer.headers["cache-control"] = "no-store"
    return answer


def _cursor(older: int | None) -> int | None:
    if older is not None and not 1 <= older <= MAX_ID:
        raise HTTPException(400, "bad page cursor")
    return older
