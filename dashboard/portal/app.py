"""The reseller portal as its own FastAPI app, mounted by the dashboard at ``/portal``.

Pages in the dashboard's style (its stylesheet, served here too: the operator's ``/static`` sits
behind the operator's Basic auth). Reads through ``projections.portal_queries``, writes through
``producers.portal_commands`` — the same scoped calls as the reseller API, so the isolation the
API proves holds here. Every form is CSRF-protected; a read token sees every page and no button.
"""

from __future__ import annotations

import jinja2
from fastapi import FastAPI, HTTPException
from fastapi.staticfiles import StaticFiles

from dashboard.deps import STATIC_DIR
from dashboard.portal import pages
from dashboard.portal.deps import SignInRequired, error_page, to_sign_in
from dashboard.reseller_api.auth import Portal
from producers.reseller_commands import CommandRejected

PREFIX = "/portal"


def create_portal_app(portal: Portal, templates: jinja2.Environment) -> FastAPI:
    app = FastAPI(title="simfleet reseller portal", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.portal = portal
    app.state.templates = templates
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(SignInRequired, to_sign_in)
    app.add_exception_handler(HTTPException, error_page)
    app.add_exception_handler(CommandRejected, error_page)
    return app
