"""The operator dashboard: server-rendered pages, a JSON API, and the old automation's run URLs.

Reads only through the ``projections.*_queries`` modules; writes only through
``producers.commands``; the Helix page's read-only carrier lookups call the ``HelixClient``
(``dashboard.helix_query``) when the process has one. Pages work without JavaScript;
``static/dashboard.js`` only refreshes the overview's numbers and adds "select all". Security is
in ``dashboard.security``.
"""

from __future__ import annotations

from typing import cast

import asyncpg
from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware

from dashboard import api_reseller_tokens, api_resellers, openapi_contract
from dashboard.api_reseller_tokens import TokenDesk
from dashboard.deps import (
    STATIC_DIR,
    Dashboard,
    load_endpoint_banner,
    template_environment,
)
from dashboard.portal.app import PREFIX as PORTAL
from dashboard.portal.app import create_portal_app
from dashboard.reseller_api.app import PREFIX as RESELLER_API
from dashboard.reseller_api.app import build_portal, create_reseller_api
from dashboard.routes import (
    actions,
    api,
    audit,
    carrier,
    endpoints,
    helix_query,
    imports,
    pages,
    reseller_tokens,
    run,
)
from dashboard.security import (
    Credentials,
    CsrfTokens,
    basic_auth,
    json_writes_only,
    security_headers,
)
from infra.bus import BrokerUnavailable, Bus
from infra.clock import Clock
from infra.helix.client import HelixClient
from infra.kafka_lag import LagSource
from infra.settings import Settings
from infra.webhook_signing import SecretBox, load_or_create_key
from producers.commands import Commands
from producers.reseller_commands import ResellerCommands
from producers.reseller_tokens import ResellerTokens
from projections.log_queries import BadCursor

CSRF_KEY = "dashboard-csrf.key"
FORM_BYTES = 1024 * 1024  # every form and JSON request


def create_dashboard_app(
    settings: Settings,
    pool: asyncpg.Pool,
    bus: Bus,
    clock: Clock,
    helix: HelixClient | None = None,
    *,
    lag: LagSource | None = None,
) -> FastAPI:
    """``helix``: the carrier client for the Helix page's lookups; without it they are off.
    ``lag``: consumer lag per group for the overview; without it the overview says so."""
    credentials = Credentials.parse(settings.secrets.dashboard_auth.get_secret_value())
    app = _bare_app()
    reseller_commands = ResellerCommands(
        bus=bus,
        pool=pool,
        box=SecretBox.of_deployment(settings),
        settings=settings.webhooks,
        clock=clock,
    )
    app.state.dashboard = _dashboard(
        settings, pool, bus, clock,
        credentials=credentials, reseller_commands=reseller_commands, helix=helix, lag=lag,
    )  # fmt: skip
    # the last added is the outermost: headers go on every answer, the auth's refusals too
    app.add_middleware(BaseHTTPMiddleware, dispatch=basic_auth(credentials))
    app.add_middleware(BaseHTTPMiddleware, dispatch=security_headers)
    _include_routes(app, settings, clock, reseller_commands)
    _mount_reseller_sites(app, settings, clock, reseller_commands)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_error_handlers(app)
    openapi_contract.install(app, secrets_in_urls=settings.secrets_in_urls)
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    return app


def _bare_app() -> FastAPI:
    return FastAPI(
        title="simfleet dashboard",
        description="The operator dashboard's JSON API (docs/dashboard.md).",
        openapi_url="/api/openapi.json",
        docs_url=None,  # Swagger UI loads its assets from a CDN; the CSP (rightly) forbids it
        redoc_url=None,
        # a body over it is refused (413) as it arrives, before any parser holds or spools it;
        # the sheet import's routes allow a sheet (``dashboard.routes.imports``)
        max_body_size=FORM_BYTES,
    )


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _dashboard(
    settings: Settings,
    pool: asyncpg.Pool,
    bus: Bus,
    clock: Clock,
    *,
    credentials: Credentials | None,
    reseller_commands: ResellerCommands,
    helix: HelixClient | None,
    lag: LagSource | None,
) -> Dashboard:
    """What the routes share (``app.state.dashboard``)."""
    secrets = settings.secrets
    return Dashboard(
        pool=pool,
        bus=bus,
        clock=clock,
        commands=Commands(pool, bus, clock, settings.helix.request_stale_s),
        resellers=reseller_commands,
        csrf=CsrfTokens(credentials, clock, csrf_secret(settings)),
        templates=template_environment(),
        run_secrets={
            "activate": secrets.bulk_run_secret.get_secret_value(),
            "finalize": secrets.finalizer_run_secret.get_secret_value(),
            "rotate": secrets.admin_run_secret.get_secret_value(),
            "sync": secrets.sync_secret.get_secret_value(),
            "cancel": secrets.cancel_secret.get_secret_value(),
        },
        helix=helix,
        lag=lag,
        secrets=frozenset(v for v in settings.secret_values().values() if v),
        run_secret_in_url=settings.secrets_in_urls,
    )


def _include_routes(
    app: FastAPI, settings: Settings, clock: Clock, reseller_commands: ResellerCommands
) -> None:
    """The operator's pages and JSON API; the pages that show the endpoint banner load it."""
    app.include_router(pages.router, dependencies=[Depends(load_endpoint_banner)])
    for router in (actions.router, endpoints.router, imports.router, api.router, run.router):
        app.include_router(router)
    app.include_router(audit.router, dependencies=[Depends(load_endpoint_banner)])
    app.include_router(reseller_tokens.router)
    app.include_router(helix_query.router)
    app.include_router(carrier.page_router)
    app.include_router(carrier.api_router)
    app.include_router(helix_query.api_router)
    app.include_router(helix_query.legacy_router)
    # the reseller JSON API's own state: its routers serve without the pages' ``Dashboard`` too
    app.state.reseller_commands = reseller_commands
    app.state.reseller_tokens = TokenDesk(
        ResellerTokens(reseller_commands, clock), settings.reseller_api.token_days
    )
    for router in (api_resellers.router, api_reseller_tokens.router):
        app.include_router(router, dependencies=[Depends(json_writes_only)])


def _mount_reseller_sites(
    app: FastAPI, settings: Settings, clock: Clock, reseller_commands: ResellerCommands
) -> None:
    """The resellers' own API and portal pages, with their own authentication."""
    portal = build_portal(
        reseller_commands, box=SecretBox.of_deployment(settings), webhooks=settings.webhooks,
        settings=settings.reseller_api, clock=clock, csrf_secret=csrf_secret(settings),
    )  # fmt: skip
    app.state.token_uses = portal.uses  # flushed by whoever serves the app (the component)
    app.mount(RESELLER_API, create_reseller_api(portal))
    app.mount(PORTAL, create_portal_app(portal, app.state.dashboard.templates))


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(BrokerUnavailable, broker_unavailable)
    app.add_exception_handler(BadCursor, bad_value)
    app.add_exception_handler(asyncpg.DataError, bad_value)


def csrf_secret(settings: Settings) -> bytes:
    """``DASHBOARD_CSRF_SECRET``, else a random key kept (0600) in the state dir."""
    configured = settings.secrets.dashboard_csrf_secret.get_secret_value()
    return configured.encode() if configured else load_or_create_key(settings.state_dir / CSRF_KEY)


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/healthz"


async def http_error(request: Request, exc: Exception) -> Response:
    http = cast(HTTPException, exc)
    if wants_json(request):
        return await http_exception_handler(request, http)
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard.page(request, "error.html", status_code=http.status_code, message=http.detail)


async def validation_error(request: Request, exc: Exception) -> Response:
    invalid = cast(RequestValidationError, exc)
    if wants_json(request):
        return await request_validation_exception_handler(request, invalid)
    dashboard: Dashboard = request.app.state.dashboard
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in invalid.errors())
    return dashboard.page(request, "error.html", status_code=422, message=problems)


async def bad_value(request: Request, exc: Exception) -> Response:
    """A value the queries cannot use: a forged page cursor, or text Postgres refuses to compare
    or store (a NUL character, say; class 22 "data exception") — the request's fault, a 400."""
    message = (
        str(exc) if isinstance(exc, BadCursor) else f"A value in the request is unusable: {exc}"
    )
    return await http_error(request, HTTPException(400, message))


async def broker_unavailable(request: Request, _exc: Exception) -> Response:
    message = (
        "Kafka did not acknowledge in time; some requests may not have been published. "
        "Check the SIM timelines before retrying."
    )
    if wants_json(request):
        return JSONResponse({"detail": message}, status_code=503)
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard.page(request, "error.html", status_code=503, message=message)
