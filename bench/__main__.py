"""``make bench``: runs every ``bench/bench_*.py`` and prints one table (saved to results.md).

Each benchmark module has ``async def run() -> list[dict]`` whose rows carry ``benchmark``,
``value``, ``unit``, ``target`` and optional ``detail``.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).parent
COLUMNS = ("benchmark", "value", "unit", "target", "detail")


def _cell(value: object) -> str:
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def table_lines(rows: list[dict[str, object]]) -> list[str]:
    lines = []
    for row in rows:
        extra = ", ".join(f"{k} {_cell(v)}" for k, v in row.items() if k not in COLUMNS)
        detail = "; ".join(d for d in (str(row.get("detail", "")), extra) if d)
        cells = [_cell(row.get(col, "")) for col in COLUMNS[:-1]] + [detail]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


HEADER = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]


def render(rows: list[dict[str, object]]) -> str:
    return "\n".join(HEADER + table_lines(rows))


def merged(previous: str, rows: list[dict[str, object]]) -> str:
    """The saved table with these rows replacing their namesakes (a partial run keeps the rest)."""
    fresh = table_lines(rows)
    names = {line.split("|")[1] for line in fresh}
    kept = [
        line
        for line in previous.splitlines()
        if line.startswith("| ") and line not in HEADER and line.split("|")[1] not in names
    ]
    return "\n".join(HEADER + kept + fresh)


def print_table(rows: list[dict[str, object]]) -> None:
    sys.stdout.write(render(rows) + "\n")


def main(names: list[str]) -> int:
    modules = names or sorted(p.stem for p in HERE.glob("bench_*.py"))
    rows: list[dict[str, object]] = []
    failed = 0
    for name in modules:
        sys.stderr.write(f"running {name}…\n")
        try:
            module = importlib.import_module(f"bench.{name}")
            rows.extend(asyncio.run(module.run()))
        except Exception:  # one broken benchmark must not hide the others
            failed += 1
            traceback.print_exc()
            rows.append({"benchmark": name, "value": "failed", "detail": "see stderr"})
    sys.stdout.write(render(rows) + "\n")
    results = HERE / "results.md"
    previous = results.read_text() if names and results.exists() else ""
    results.write_text(
        "# Benchmark results\n\nProduced by `make bench` (2 cores shared by the broker, "
        "Postgres, the system under test and the load generator).\n\n"
        + merged(previous, rows)
        + "\n"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
