"""The gateway bridge's API description: its routes read raw bytes (size limit, verbatim
rejects), so their bodies, answers and security schemes are declared here, from the wire models
of ``producers.skyline.wire``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from infra.openapi import Contract, complete
from producers.skyline.intake import SECRET_HEADER
from producers.skyline.wire import (
    WIRE_MODELS,
    DevStatusPush,
    PortStatusPush,
    RecvSmsPush,
    SimpleSms,
)


class PushAccepted(BaseModel):
    accepted: int = Field(description="SMS published to sms.inbound")
    reports: int = Field(description="delivery reports published to sms.inbound")
    statuses: int = Field(description="status reports published to gateway.status")
    ids: list[str] = Field(description="event ids, deterministic: the same push gives the same ids")


class PushError(BaseModel):
    error: str


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": "string"}}


_TEXT_PUSH = {"type": "string", "description": "header lines, a blank line, then the SMS text"}
SMS_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [_ref(RecvSmsPush), _ref(DevStatusPush), _ref(PortStatusPush)]}
            },
            "text/plain": {"schema": _TEXT_PUSH},
            "application/octet-stream": {"schema": _TEXT_PUSH},
        },
    },
    "parameters": [
        _query("port", "text push: receiving port (61A or 61.01)"),
        _query("sender", "text push: originating number"),
        _query("mac", "gateway MAC (text push)"),
        _query("iccid", "text push: receiving SIM"),
        _query("gateway_id", "gateway id when the push has no mac"),
    ],
}
SIMPLE_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [_ref(SimpleSms), {"type": "array", "items": _ref(SimpleSms)}]}
            }
        },
    }
}
STATUS_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [_ref(DevStatusPush), _ref(PortStatusPush)]}}
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": PushError, "description": text}
    for code, text in {
        400: "malformed body (kept on gateway.rejected)",
        401: "missing or wrong gateway secret",
        413: "body too large",
        422: "body does not fit the format (kept on gateway.rejected)",
        503: "broker unavailable: retry after Retry-After seconds",
    }.items()
}

_SECRET_SCHEMES = {
    "gatewaySecretHeader": {
        "type": "apiKey",
        "in": "header",
        "name": SECRET_HEADER,
        "description": "GATEWAY_SECRET (unless SIMFLEET_SECRETS_IN_URLS=false, also accepted as the "
        "first path segment: /s/<secret>/sms)",
    },
    "gatewaySecretQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "secret",
        "description": "GATEWAY_SECRET, for gateways that can only be given a URL",
    },
}
CONTRACT = Contract(
    schemes=_SECRET_SCHEMES,
    security=lambda path, _method: (
        [] if path == "/healthz" else [{name: []} for name in _SECRET_SCHEMES]
    ),
    refusals=lambda _path, _method: {},  # each push route declares its own (ERRORS)
    tags={"pushes": "what Skyline gateways send"},
)


def with_wire_models(schema: dict[str, Any], contract: Contract) -> dict[str, Any]:
    """FastAPI's schema of the app, completed: the wire models the bodies refer to, and the
    contract's security schemes and refusals."""
    _, defs = models_json_schema(
        [(model, "validation") for model in WIRE_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
    complete(schema, contract)
    return schema
