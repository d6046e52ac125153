"""JSON Schemas of every event type, written to ``events/schemas/`` and checked in.

Each describes a record's value exactly as it is on the wire (serialization mode: every field
is written, so every field is required), declares its dialect (``$schema``) and identity
(``$id``), and requires the CloudEvents attributes whatever the model's defaults say.
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

from events.envelope import EVENT_TYPES, Event

SCHEMA_DIR = Path(__file__).parent / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
CLOUDEVENTS_REQUIRED = ("id", "source", "specversion", "type")


def schema_id(event_type: str) -> str:
    return f"urn:simfleet:event:{event_type}"


def event_schema(
    cls: builtins.type[Event], ref_template: str = "#/$defs/{model}"
) -> dict[str, Any]:
    """The schema of one event type; ``ref_template`` places its sub-schemas (the AsyncAPI
    document gathers them under ``components/schemas``)."""
    schema = cls.model_json_schema(mode="serialization", ref_template=ref_template)
    required = set(schema.get("required", ())) | set(CLOUDEVENTS_REQUIRED)
    return {
        "$schema": DIALECT,
        "$id": schema_id(cls.event_type()),
        **schema,
        "required": sorted(required),
    }


def render_schemas() -> dict[str, str]:
    return {
        f"{event_type}.json": json.dumps(event_schema(cls), indent=2, sort_keys=True) + "\n"
        for event_type, cls in sorted(EVENT_TYPES.items())
    }


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render_schemas()
    for stale in directory.glob("*.json"):
        if stale.name not in rendered:
            stale.unlink()
    written = []
    for name, text in rendered.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def stale_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names whose checked-in schema differs from the models (missing, changed or extra)."""
    rendered = render_schemas()
    on_disk = {p.name: p.read_text() for p in directory.glob("*.json")}
    names = set(rendered) | set(on_disk)
    return sorted(n for n in names if rendered.get(n) != on_disk.get(n))
