"""The dashboard API's OpenAPI contract beyond what FastAPI infers: Basic auth on every
operation but ``/api/run/*`` (per-action secret, bearer or ``?secret=``), and the refusals the
middleware, dependencies and handlers answer (``dashboard.security``, ``dashboard.app``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from dashboard.security import RUN_PREFIX
from infra.openapi import Contract, Refusal, complete

JSON, TEXT = "application/json", "text/plain"
SCHEMES = {
    "dashboardBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "DASHBOARD_AUTH (user:password); unset, every operation answers 503",
    },
    "runSecretBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "the action's own secret: activate BULK_RUN_SECRET, finalize "
        "FINALIZER_RUN_SECRET, rotate ADMIN_RUN_SECRET, sync SYNC_SECRET, cancel CANCEL_SECRET",
    },
    "runSecretQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "secret",
        "description": "the action's own secret, as the legacy cron jobs send it",
    },
}
WRITES = frozenset({"post", "put", "patch", "delete"})


def security(path: str, _method: str) -> list[dict[str, list[str]]]:
    if path.startswith(RUN_PREFIX):
        return [{"runSecretBearer": []}, {"runSecretQuery": []}]
    return [{"dashboardBasic": []}]


def refusals(path: str, method: str) -> Mapping[int, Refusal]:
    answers: dict[int, Refusal] = {}
    if path.startswith(RUN_PREFIX):
        answers[401] = ("the action's secret is missing or wrong", (JSON,))
        answers[400] = ("the command was refused (the reason is in detail)", (JSON,))
        answers[503] = (
            "the action's secret is not set (the action is off), or Kafka is away",
            (JSON,),
        )
        return answers
    answers[401] = ("DASHBOARD_AUTH credentials missing or wrong", (TEXT,))
    answers[503] = ("DASHBOARD_AUTH is not set, or Kafka did not acknowledge", (TEXT, JSON))
    if method in WRITES:
        answers[415] = ("a write must be JSON (an import: JSON or text/csv)", (JSON,))
        answers[400] = ("the command or a value was refused (the reason is in detail)", (JSON,))
    else:
        answers[400] = ("a value (cursor, filter) is unusable", (JSON,))
    if path == "/api/import":
        answers[413] = ("the sheet is over the size limit", (JSON,))
    if "{" in path:
        answers[404] = ("nothing is known by that id", (JSON,))
    return answers


CONTRACT = Contract(
    schemes=SCHEMES,
    security=security,
    refusals=refusals,
    tags={
        "dashboard": "the pages' reads and the controls' commands",
        "run": "the legacy automation's run URLs, one secret per action",
        "resellers": "resellers, their webhook endpoints and deliveries",
        "helix": "read-only carrier lookups",
    },
    error_schema={
        "type": "object",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    },
)


def install(app: FastAPI, *, secrets_in_urls: bool = True) -> None:
    """Makes ``app.openapi()`` return the completed document (generated once, as FastAPI does)."""
    generate = app.openapi
    contract = CONTRACT if secrets_in_urls else CONTRACT.without_secrets_in_urls()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate(), contract)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
