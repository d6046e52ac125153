"""JSON Schemas of every event type, written to ``events/schemas/`` and checked in."""

from __future__ import annotations

import json
from pathlib import Path

from events.envelope import EVENT_TYPES

SCHEMA_DIR = Path(__file__).parent / "schemas"


def render_schemas() -> dict[str, str]:
    return {
        f"{event_type}.json": json.dumps(cls.model_json_schema(), indent=2, sort_keys=True) + "\n"
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
