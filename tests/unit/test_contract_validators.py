"""The published contracts pass validators written elsewhere, run here so they cannot drift:
@asyncapi/parser (AsyncAPI), openapi-spec-validator and Spectral's spectral:oas ruleset (OpenAPI),
the JSON Schema meta-schema (event schemas), prometheus_client's text parser (metrics). Node
tools are pinned in tools/contract-validators (``make contract-validators`` installs them)."""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from events.envelope import EVENT_TYPES
from events.schema_export import SCHEMA_DIR
from events.topics import ALL_TOPICS
from infra.asyncapi import DOC_PATH
from tests.support.contracts import openapi_documents

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "contract-validators"
SPECTRAL = TOOLS / "node_modules" / ".bin" / "spectral"


def node() -> str:
    found = shutil.which("node")
    assert found, "Node.js is missing: install it (make contract-validators says how)"
    assert (TOOLS / "node_modules").is_dir(), "run `make contract-validators` (npm ci)"
    return found


def parse_asyncapi(*paths: Path) -> list[str]:
    """The parser's verdict lines, one run for every document."""
    script = TOOLS / "validate-asyncapi.mjs"
    parsed = subprocess.run(
        [node(), str(script), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert not parsed.stderr.strip(), parsed.stderr
    return parsed.stdout.splitlines()


def spectral(*paths: Path) -> dict[str, list[str]]:
    """Spectral's errors (spectral:oas ruleset) per file linted, in one run."""
    node()
    linted = subprocess.run(
        [
            str(SPECTRAL),
            "lint",
            "--ruleset",
            str(TOOLS / "spectral.yaml"),
            "--format",
            "json",
            "--quiet",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=TOOLS,
    )
    assert linted.stdout.strip(), linted.stderr
    errors: dict[str, list[str]] = {str(p): [] for p in paths}
    for finding in json.loads(linted.stdout):
        if finding["severity"] == 0:
            errors[finding["source"]].append(f"{finding['code']}: {finding['message']}")
    return errors


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return openapi_documents(tmp_path_factory.mktemp("state"))


def test_the_asyncapi_document_passes_the_asyncapi_parser(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    document = yaml.safe_load(DOC_PATH.read_text())
    document["channels"]["sms.inbound"]["messages"]["sms.received"]["$ref"] += "_nowhere"
    broken.write_text(yaml.safe_dump(document))
    verdicts = parse_asyncapi(DOC_PATH, broken)
    assert f"ok {DOC_PATH}: {len(ALL_TOPICS)} channels, {len(EVENT_TYPES)} messages" in verdicts, (
        verdicts
    )
    assert f"invalid {broken}" in verdicts  # the parser does judge


def test_both_openapi_documents_pass_openapi_spec_validator(
    openapi: dict[str, dict[str, Any]],
) -> None:
    for document in openapi.values():
        validate(document)


def test_both_openapi_documents_pass_spectral_without_errors(
    openapi: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    paths = []
    for name, document in openapi.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(document))
    dashboard = openapi["dashboard"]
    ambiguous = dashboard | {
        "paths": dashboard["paths"]
        | {"/api/sims/{action}": dashboard["paths"]["/api/sims/{iccid}"]}
    }
    (tmp_path / "ambiguous.json").write_text(json.dumps(ambiguous))
    errors = spectral(*paths, tmp_path / "ambiguous.json")
    for path in paths:
        assert errors[str(path)] == [], path.name
    # Spectral does judge: equivalent path templates are an error
    assert any(e.startswith("path-params") for e in errors[str(tmp_path / "ambiguous.json")])


def test_every_event_schema_passes_the_json_schema_meta_schema() -> None:
    schemas = sorted(SCHEMA_DIR.glob("*.json"))
    assert len(schemas) == len(EVENT_TYPES)
    for path in schemas:
        Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_the_metrics_exposition_parses_as_prometheus_text() -> None:
    families = list(text_string_to_metric_families(generate_latest().decode()))
    names = {f.name for f in families}
    assert {"simfleet_pushes_rejected", "simfleet_bridge_requests"} <= names
