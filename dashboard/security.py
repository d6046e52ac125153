"""Who may use the dashboard, and what a browser may do with it.

- HTTP Basic against ``DASHBOARD_AUTH`` (``user:password``) on every path but ``/healthz``,
  ``/api/run/*`` (the old automation's per-action secrets) and the resellers' own ``/reseller/``
  and ``/portal/`` (their API tokens). Unset → 503 on every path: the
  dashboard never runs open.
- Forms carry a CSRF token bound to the user, signed with a key derived from a random server
  secret (``DASHBOARD_CSRF_SECRET``, else a key file in the state dir) and ``DASHBOARD_AUTH``:
  knowing the password is not enough to forge one; it survives restarts, works across replicas
  that share the secret and dies when the password changes.
  Basic credentials are ambient (a browser sends them cross-site), hence the token.
- API writes must not use a content type a cross-site form can send (form, multipart, text):
  JSON (or the import's CSV) needs a CORS preflight, which nothing here answers.
- Security headers on every response, errors included; no inline script anywhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request, Response
from fastapi.responses import PlainTextResponse

from infra.clock import Clock

OPEN_PATHS = frozenset({"/healthz"})
RUN_PREFIX = "/api/run/"
RESELLER_PREFIXES = ("/reseller/", "/portal/")  # their own tokens: reseller_api, portal
CSRF_FIELD = "csrf_token"
CSRF_TTL_S = 12 * 3600
SIMPLE_CONTENT_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain", ""}
)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

CallNext = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Credentials:
    """``DASHBOARD_AUTH`` parsed once; ``None`` when unset or malformed."""

    user: str
    password: str

    @classmethod
    def parse(cls, configured: str) -> Credentials | None:
        user, sep, password = configured.partition(":")
        return cls(user, password) if sep and user and password else None

    def check(self, authorization: str | None) -> str | None:
        """The user name when the ``Authorization`` header holds these credentials."""
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            offered = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        expected = f"{self.user}:{self.password}".encode()
        return self.user if hmac.compare_digest(offered, expected) else None


class CsrfTokens:
    def __init__(self, credentials: Credentials | None, clock: Clock, server_secret: bytes) -> None:
        if len(server_secret) < 16:
            raise ValueError("the CSRF server secret must be random, 16 bytes or more")
        bound = f"{credentials.user}:{credentials.password}" if credentials else ""
        self._key = hmac.new(server_secret, b"csrf\0" + bound.encode(), hashlib.sha256).digest()
        self._clock = clock

    def issue(self, user: str) -> str:
        issued = int(self._clock.now().timestamp())
        return f"{issued}.{self._sign(user, issued)}"

    def valid(self, user: str, token: str) -> bool:
        issued, _, signature = token.partition(".")
        if not issued.isdigit():
            return False
        age = self._clock.now().timestamp() - int(issued)
        fresh = -60 <= age <= CSRF_TTL_S  # a minute of clock skew between replicas
        return fresh and hmac.compare_digest(signature, self._sign(user, int(issued)))

    def _sign(self, user: str, issued: int) -> str:
        return hmac.new(self._key, f"{user}|{issued}".encode(), hashlib.sha256).hexdigest()


def basic_auth(
    credentials: Credentials | None,
) -> Callable[[Request, CallNext], Awaitable[Response]]:
    """Middleware: sets ``request.state.operator`` or answers 401/503 itself."""

    async def require_operator(request: Request, call_next: CallNext) -> Response:
        path = request.url.path
        resellers = path.startswith(RESELLER_PREFIXES) or path == "/portal"
        if path in OPEN_PATHS or path.startswith(RUN_PREFIX) or resellers:
            return await call_next(request)
        if credentials is None:
            return PlainTextResponse(
                "The dashboard is disabled: set DASHBOARD_AUTH=user:password to enable it.",
                status_code=503,
            )
        user = credentials.check(request.headers.get("authorization"))
        if user is None:
            return PlainTextResponse(
                "Authentication required.",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="simfleet", charset="UTF-8"'},
            )
        request.state.operator = user
        return await call_next(request)

    return require_operator


async def security_headers(request: Request, call_next: CallNext) -> Response:
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def json_writes_only(request: Request) -> None:
    """API dependency: refuses a write whose body could have come from a cross-site form."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in SIMPLE_CONTENT_TYPES:
        raise HTTPException(
            415, "API writes need Content-Type: application/json (text/csv for an import)"
        )
