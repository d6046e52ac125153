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


def render(rows: list[dict[str, object]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = []
        for col in COLUMNS:
            value = row.get(col, "")
            cells.append(f"{value:,}" if isinstance(value, int | float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    table = render(rows)
    sys.stdout.write(table + "\n")
    (HERE / "results.md").write_text(
        "# Benchmark results\n\nProduced by `make bench`.\n\n" + table + "\n"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
