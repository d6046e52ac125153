"""A reseller signed in to the portal: the token in a cookie, CSRF tokens bound to it.

The cookie holds the API token itself (``HttpOnly``, ``SameSite=Strict``, ``Secure`` over
https, path ``/portal``), so a revoked or expired token ends the session at the next request,
with no second kind of credential to revoke. Forms carry a CSRF token signed with a key derived
from that token (the dashboard's ``CsrfTokens``), so it dies with the token.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request, Response

from dashboard.reseller_api.auth import Caller, Portal, caller_of, limit, used
from dashboard.security import Credentials, CsrfTokens

COOKIE = "simfleet_portal"
PATH = "/portal"


@dataclass(frozen=True)
class Session:
    caller: Caller
    csrf: CsrfTokens

    def csrf_token(self) -> str:
        return self.csrf.issue(self.caller.token_id)

    def csrf_valid(self, offered: str) -> bool:
        return self.csrf.valid(self.caller.token_id, offered)


async def session_of(request: Request, portal: Portal) -> Session | None:
    token = request.cookies.get(COOKIE, "")
    caller = await caller_of(portal, token) if token else None
    if caller is None:
        return None
    limit(portal, caller)
    await used(portal, caller, request)
    csrf = CsrfTokens(Credentials(caller.token_id, token), portal.clock, portal.csrf_secret)
    return Session(caller, csrf)


def sign_in(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE, token, path=PATH, httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def sign_out(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path=PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
