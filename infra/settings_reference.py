"""The configuration reference: every environment variable, its default and what it does.

Rendered into README.md between markers (``simfleet config reference --write``); a test fails
when the README is stale, so the documented defaults are the real ones.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from infra.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ENV_EXAMPLE = ROOT / ".env.example"
_EXAMPLE_LINE = re.compile(r"^#\s*([A-Z][A-Z0-9_]*)=\S*\s*(?:#\s*(.*))?$")
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if isinstance(value, SecretStr):
        return "(secret, empty)" if not value.get_secret_value() else "(secret)"
    if value is None or value == "":
        return "unset"
    if isinstance(value, tuple | list):
        return f"`{json.dumps(list(value))}`"  # what the variable takes: JSON, not a comma list
    return str(value)


def _rows(model: type[BaseSettings]) -> list[tuple[str, str, str]]:
    prefix = str(model.model_config.get("env_prefix", ""))
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            rows += _rows(annotation)
            continue
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        env = (alias or f"{prefix}{name}").upper()
        rows.append((env, _default(field), " ".join((field.description or "").split())))
    return rows


def _example_notes() -> dict[str, str]:
    """The comments of ``.env.example``: the meaning where a field has no description."""
    notes = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if (match := _EXAMPLE_LINE.match(line.strip())) and match.group(2):
            notes[match.group(1)] = match.group(2).strip()
    return notes


def render() -> str:
    notes = _example_notes()
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [
        f"| `{env}` | {default} | {(text or notes.get(env, '')).replace('|', '/')} |"
        for env, default, text in _rows(Settings)
    ]
    return "\n".join(lines)


def with_reference(readme: str) -> str:
    block = f"{START}\n{render()}\n{END}"
    return re.sub(f"{re.escape(START)}.*?{re.escape(END)}", lambda _m: block, readme, flags=re.S)
