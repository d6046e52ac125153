"""What the dashboard's routes share: one ``Dashboard`` per app (in ``app.state``) and the deps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import urlencode

import asyncpg
import jinja2
from fastapi import Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse

from dashboard.security import CSRF_FIELD, CsrfTokens
from infra.actors import dashboard_actor
from infra.bus import Bus
from infra.clock import Clock
from infra.helix.client import HelixClient
from infra.kafka_lag import LagSource
from producers.commands import Commands
from producers.reseller_commands import ResellerCommands
from projections.reseller_queries import unhealthy_endpoints

PACKAGE_DIR = Path(__file__).parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"


@dataclass(frozen=True)
class Dashboard:
    pool: asyncpg.Pool
    bus: Bus
    clock: Clock
    commands: Commands
    resellers: ResellerCommands
    csrf: CsrfTokens
    templates: jinja2.Environment
    run_secrets: Mapping[str, str]  # action → secret; never rendered
    helix: HelixClient | None = None  # the carrier client, where this process has one
    lag: LagSource | None = None  # consumer lag per group (end offsets - committed)
    secrets: frozenset[str] = frozenset()  # every configured secret: masked in carrier answers
    run_secret_in_url: bool = True  # /api/run/*?secret= (SIMFLEET_SECRETS_IN_URLS)

    def page(
        self,
        request: Request,
        template: str,
        *,
        status_code: int = 200,
        nav: str = "",
        **context: Any,
    ) -> HTMLResponse:
        operator = getattr(request.state, "operator", None)
        html = self.templates.get_template(template).render(
            request=request,
            nav=nav,
            endpoint_banner=getattr(request.state, "endpoint_banner", ()),
            operator=operator,
            csrf_field=CSRF_FIELD,
            csrf_token=self.csrf.issue(operator) if operator else "",
            **context,
        )
        return HTMLResponse(html, status_code=status_code)


def template_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = when
    env.filters["percent"] = percent
    env.filters["short_id"] = short_id
    env.globals["with_query"] = with_query
    return env


def short_id(value: str | None, keep: int = 10) -> str:
    """An event id's readable part: ``sms.received_3f2a1b9c0d…`` shows its first hex digits
    (the whole id stays in the cell's title)."""
    if not value:
        return "—"
    kind, _, digest = value.rpartition("_")
    if not kind or len(digest) <= keep:
        return value
    return f"{digest[:keep]}…"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def with_query(request: Request, **params: Any) -> str:
    """This page's path and query with ``params`` replaced (``None`` removes one)."""
    query = dict(request.query_params)
    for name, value in params.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = str(value)
    return f"{request.url.path}?{urlencode(query)}" if query else request.url.path


def get_dashboard(request: Request) -> Dashboard:
    return cast(Dashboard, request.app.state.dashboard)


def get_operator(request: Request) -> str:
    """The actor recorded on every request: the Basic-auth user (set by the auth middleware),
    ``dashboard:<user>`` through a page, ``api:<user>`` through the JSON API."""
    return dashboard_actor(request.state.operator, request.url.path)


async def verify_csrf(
    request: Request,
    dashboard: Annotated[Dashboard, Depends(get_dashboard)],
    csrf_token: Annotated[str, Form()] = "",
) -> None:
    if not dashboard.csrf.valid(request.state.operator, csrf_token):
        raise HTTPException(403, "The form's CSRF token is missing or expired: reload the page.")


DashboardDep = Annotated[Dashboard, Depends(get_dashboard)]
ActorDep = Annotated[str, Depends(get_operator)]


async def load_endpoint_banner(request: Request) -> None:
    """Disabled and failing webhook endpoints, for the banner on every page."""
    dashboard: Dashboard = request.app.state.dashboard
    request.state.endpoint_banner = await unhealthy_endpoints(dashboard.pool)
