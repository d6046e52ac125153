"""The reseller API as its own FastAPI app, mounted by the dashboard at ``/reseller/v1``.

Its own OpenAPI document (``/reseller/v1/openapi.json``) lists only what a reseller may call;
the operator's Basic auth does not apply here and a reseller token opens nothing outside.
Errors are JSON: a command's refusal is 404 (not yours, or unknown) or 422, a value Postgres
cannot use 400, Kafka not acknowledging 503.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from consumers.webhooks.targets import EndpointDirectory
from dashboard.reseller_api import routes
from dashboard.reseller_api.auth import Portal
from dashboard.reseller_api.rate_limit import RateLimiter
from dashboard.reseller_api.usage import TokenUsage
from infra.bus import BrokerUnavailable
from infra.clock import Clock
from infra.settings import ResellerApiSettings, WebhookSettings
from infra.webhook_signing import SecretBox
from producers.portal_commands import PortalCommands
from producers.reseller_commands import CommandRejected, NotFound, ResellerCommands
from producers.token_uses import TokenUses

PREFIX = "/reseller/v1"
DESCRIPTION = """Your SIMs, numbers, SMS, webhook deliveries and endpoints — only yours.

Authenticate with the token your operator issued: `Authorization: Bearer sfr_…`. A read token
may call every GET; changes need a read-write token. Each token has its own request budget:
past it the answer is 429 with `Retry-After`. How to verify webhook signatures, the payloads,
retries and recovery: docs/resellers.md."""


def build_portal(
    commands: ResellerCommands,
    *,
    box: SecretBox,
    webhooks: WebhookSettings,
    settings: ResellerApiSettings,
    clock: Clock,
    csrf_secret: bytes,
) -> Portal:
    portal_commands = PortalCommands(
        commands,
        directory=EndpointDirectory(commands.pool, box, 0.0),
        webhooks=webhooks,
        clock=clock,
    )
    limiter = RateLimiter(settings.rate_per_s, settings.burst, time.monotonic)
    usage = TokenUsage(commands.pool, clock)
    return Portal(
        commands=portal_commands,
        limiter=limiter,
        clock=clock,
        usage=usage,
        uses=TokenUses(commands.emit, clock, settings.use_flush_s),
        csrf_secret=csrf_secret,
    )


def create_reseller_api(portal: Portal) -> FastAPI:
    app = FastAPI(
        title="simfleet reseller API",
        version="1",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.portal = portal
    app.include_router(routes.router)
    app.add_exception_handler(NotFound, refused(404))
    app.add_exception_handler(CommandRejected, refused(422))
    app.add_exception_handler(asyncpg.DataError, refused(400))
    app.add_exception_handler(BrokerUnavailable, refused(503))
    return app


def refused(status_code: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def answer(_request: Request, exc: Exception) -> Response:
        detail = str(exc) if status_code != 503 else "Kafka did not acknowledge; retry shortly."
        if isinstance(exc, asyncpg.DataError):
            detail = "A value in the request is unusable."
        return JSONResponse({"detail": detail}, status_code=status_code)

    return answer
