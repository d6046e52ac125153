"""An API's OpenAPI description as a plain HTML page: no script, no CDN, nothing inline but
markup, served under a CSP that allows nothing to load (``default-src 'none'``).

Swagger UI and ReDoc load their code from a CDN; a page an operator opens next to credentials
should not run third-party code. This one lists each operation, its parameters and request
bodies, and the schemas as JSON, rendered on the server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
Schema = dict[str, Any]


def _operation(path: str, method: str, op: Schema) -> str:
    params = "".join(
        f"<li><code>{escape(p['name'])}</code> ({escape(p.get('in', ''))}): "
        f"{escape(p.get('description', ''))}</li>"
        for p in op.get("parameters", [])
    )
    bodies = "".join(
        f"<li><code>{escape(kind)}</code>: <code>{escape(json.dumps(body.get('schema', {})))}</code>"
        "</li>"
        for kind, body in op.get("requestBody", {}).get("content", {}).items()
    )
    answers = "".join(
        f"<li><code>{escape(str(code))}</code> {escape(answer.get('description', ''))}</li>"
        for code, answer in op.get("responses", {}).items()
    )
    return (
        f"<section><h2><code>{escape(method.upper())} {escape(path)}</code> "
        f"{escape(op.get('summary', ''))}</h2>"
        + (f"<h3>parameters</h3><ul>{params}</ul>" if params else "")
        + (f"<h3>request body</h3><ul>{bodies}</ul>" if bodies else "")
        + (f"<h3>answers</h3><ul>{answers}</ul>" if answers else "")
        + "</section>"
    )


def render(schema: Schema) -> str:
    info = schema.get("info", {})
    operations = "".join(
        _operation(path, method, op)
        for path, methods in schema.get("paths", {}).items()
        for method, op in methods.items()
    )
    schemas = json.dumps(schema.get("components", {}).get("schemas", {}), indent=2)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(info.get('title', 'API'))}</title></head><body>"
        f"<h1>{escape(info.get('title', 'API'))}</h1>"
        f"<pre>{escape(info.get('description', ''))}</pre>{operations}"
        f"<h2>schemas</h2><pre>{escape(schemas)}</pre></body></html>"
    )


def api_docs_router(prefix: str, schema: Callable[[], Schema]) -> APIRouter:
    """``<prefix>/docs`` (the page) and ``<prefix>/openapi.json`` of another app."""
    router = APIRouter(prefix=prefix, include_in_schema=False)

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return HTMLResponse(render(schema()), headers=HEADERS)

    @router.get("/openapi.json")
    async def openapi() -> JSONResponse:
        return JSONResponse(schema(), headers=HEADERS)

    return router
