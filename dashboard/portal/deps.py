"""What the portal's pages share: the signed-in session, the write guard (CSRF + scope), rendering."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, cast

import jinja2
from fastapi import Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dashboard.portal.session import Session, session_of
from dashboard.reseller_api.auth import Portal
from dashboard.security import CSRF_FIELD
from producers.reseller_commands import NotFound

DELIVERY_STATUSES = ("pending", "retrying", "delivered", "failed")
Text = Annotated[str, Query(max_length=200)]


class SignInRequired(Exception):
    pass


def portal_of(request: Request) -> Portal:
    return cast(Portal, request.app.state.portal)


async def signed_in(request: Request) -> Session:
    session = await session_of(request, portal_of(request))
    if session is None:
        raise SignInRequired
    request.state.session = session
    return session


async def writing(
    session: Annotated[Session, Depends(signed_in)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Session:
    if not session.csrf_valid(csrf_token):
        raise HTTPException(403, "The form's CSRF token is missing or expired: reload the page.")
    if not session.caller.may_write:
        raise HTTPException(403, "This token is read-only.")
    return session


SessionDep = Annotated[Session, Depends(signed_in)]
WriterDep = Annotated[Session, Depends(writing)]


def render(
    request: Request, template: str, *, status_code: int = 200, nav: str = "", **context: Any
) -> HTMLResponse:
    session: Session | None = getattr(request.state, "session", None)
    environment: jinja2.Environment = request.app.state.templates
    html = environment.get_template(f"portal/{template}").render(
        request=request, nav=nav, caller=session.caller if session else None,
        csrf_field=CSRF_FIELD, csrf_token=session.csrf_token() if session else "", **context,
    )  # fmt: skip
    return HTMLResponse(html, status_code=status_code)


async def to_sign_in(_request: Request, _exc: Exception) -> Response:
    return RedirectResponse("/portal/login", status_code=303)


async def error_page(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        status, message = exc.status_code, str(exc.detail)
    else:
        status, message = (404 if isinstance(exc, NotFound) else 422), str(exc)
    response = render(request, "error.html", status_code=status, message=message)
    response.headers.update(getattr(exc, "headers", None) or {})  # Retry-After on a 429
    return response


def utc(value: str) -> datetime | None:
    """A ``datetime-local`` field, read as UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"not a date and time: {value[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
