"""What FastAPI leaves out of an OpenAPI document and an integrator needs: how each operation is
authenticated, the refusals it can answer, and one spelling for schemas tools read strictly.

The HTTP apps (gateway bridge, dashboard) declare their own schemes and refusals; this module
writes them into the generated document the same way for both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
Refusal = tuple[str, tuple[str, ...]]  # (description, media types its body may have)


@dataclass(frozen=True)
class Contract:
    """``schemes``: security scheme objects by name; ``security(path, method)``: the
    requirement of one operation (``[]`` = open); ``refusals(path, method)``: status code →
    (description, media types) of the answers it can give besides its own; ``tags``: a
    description per tag the operations use."""

    schemes: Mapping[str, dict[str, Any]]
    security: Callable[[str, str], list[dict[str, list[str]]]]
    refusals: Callable[[str, str], Mapping[int, Refusal]]
    tags: Mapping[str, str] = field(default_factory=dict)
    error_schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})

    def without_secrets_in_urls(self) -> Contract:
        """The contract of an app run with ``SIMFLEET_SECRETS_IN_URLS=false``: its query-string
        schemes are refused there, so the document must not offer them to integrators."""
        in_url = {name for name, scheme in self.schemes.items() if scheme.get("in") == "query"}
        kept = {name: scheme for name, scheme in self.schemes.items() if name not in in_url}
        outer = self.security

        def security(path: str, method: str) -> list[dict[str, list[str]]]:
            return [need for need in outer(path, method) if not in_url & need.keys()]

        return replace(self, schemes=kept, security=security)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def complete(document: dict[str, Any], contract: Contract) -> dict[str, Any]:
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(contract.schemes)
    for path, method, operation in operations(document):
        operation["security"] = contract.security(path, method)
        responses = operation.setdefault("responses", {})
        for code, (description, media_types) in contract.refusals(path, method).items():
            content = {m: {"schema": _error(contract, m)} for m in media_types}
            responses.setdefault(str(code), {"description": description, "content": content})
    used = sorted(
        {t for _, _, operation in operations(document) for t in operation.get("tags", ())}
    )
    if used:
        document["tags"] = [
            {"name": t, **({"description": contract.tags[t]} if t in contract.tags else {})}
            for t in used
        ]
    for schema in components.get("schemas", {}).values():
        _with_items(schema)
    return document


def _error(contract: Contract, media_type: str) -> dict[str, Any]:
    return contract.error_schema if media_type == "application/json" else {"type": "string"}


def _with_items(schema: Any) -> None:
    """A fixed-length array (pydantic's ``prefixItems`` for a tuple) also gets ``items``: the
    one schema its entries share, so readers that predate ``prefixItems`` see a typed array."""
    if isinstance(schema, dict):
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and "items" not in schema:
            distinct = [s for i, s in enumerate(prefix) if s not in prefix[:i]]
            schema["items"] = distinct[0] if len(distinct) == 1 else {"anyOf": distinct}
        for value in schema.values():
            _with_items(value)
    elif isinstance(schema, list):
        for value in schema:
            _with_items(value)
