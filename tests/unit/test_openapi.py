import re
from pathlib import Path
from typing import Any

import pytest

from infra.openapi import operations
from tests.support.contracts import openapi_documents


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return openapi_documents(Path(tmp_path_factory.mktemp("state")))


def test_no_two_paths_are_equivalent_templates(documents: dict[str, dict[str, Any]]) -> None:
    for name, document in documents.items():
        shapes = [re.sub(r"\{[^}]*\}", "{}", path) for path in document["paths"]]
        assert len(shapes) == len(set(shapes)), name
    assert "/api/sims/{action}" not in documents["dashboard"]["paths"]
    assert {"/api/sims/{iccid}", "/api/sims/cancel"} <= set(documents["dashboard"]["paths"])


def test_the_dashboard_declares_basic_auth_and_the_run_secrets(
    documents: dict[str, dict[str, Any]],
) -> None:
    document = documents["dashboard"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["dashboardBasic"] == schemes["dashboardBasic"] | {
        "type": "http",
        "scheme": "basic",
    }
    assert schemes["runSecretBearer"]["scheme"] == "bearer"
    assert (schemes["runSecretQuery"]["in"], schemes["runSecretQuery"]["name"]) == (
        "query",
        "secret",
    )
    for path, method, operation in operations(document):
        if path.startswith("/api/run/"):
            assert operation["security"] == [{"runSecretBearer": []}, {"runSecretQuery": []}]
        else:
            assert operation["security"] == [{"dashboardBasic": []}], (method, path)
        assert {"401", "503"} <= set(operation["responses"]), (method, path)
        if method == "post" and not path.startswith("/api/run/"):
            assert "415" in operation["responses"], path
    import_answers = document["paths"]["/api/import"]["post"]["responses"]
    assert {"413", "415", "422"} <= set(import_answers)


def test_the_bridge_declares_the_gateway_secret_forms_and_its_refusals(
    documents: dict[str, dict[str, Any]],
) -> None:
    document = documents["bridge"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["gatewaySecretHeader"] == schemes["gatewaySecretHeader"] | {
        "type": "apiKey",
        "in": "header",
        "name": "x-gateway-secret",
    }
    assert (schemes["gatewaySecretQuery"]["in"], schemes["gatewaySecretQuery"]["name"]) == (
        "query",
        "secret",
    )
    for path, _method, operation in operations(document):
        if path == "/healthz":
            assert operation["security"] == []
            continue
        assert operation["security"] == [{"gatewaySecretHeader": []}, {"gatewaySecretQuery": []}]
        assert {"400", "401", "413", "422", "503"} <= set(operation["responses"]), path
        names = {p["name"] for p in operation.get("parameters", ())}
        assert "secret" not in names, "the secret is a security scheme, not a parameter"


def test_fixed_length_arrays_also_name_their_items(documents: dict[str, dict[str, Any]]) -> None:
    def arrays(schema: Any) -> list[dict[str, Any]]:
        if isinstance(schema, dict):
            own = [schema] if "prefixItems" in schema else []
            return own + [a for v in schema.values() for a in arrays(v)]
        if isinstance(schema, list):
            return [a for v in schema for a in arrays(v)]
        return []

    tuples = arrays(documents["dashboard"]["components"]["schemas"])
    assert tuples
    assert all("items" in t for t in tuples)
