"""``make bench``: runs every ``bench/bench_*.py`` on each broker and prints one table.

    python -m bench                          # every module, on Apache Kafka then on Tansu
    python -m bench bench_bridge             # one module (the saved table keeps the other rows)
    python -m bench --broker tansu bench_x   # one broker only

Each benchmark module has ``async def run() -> list[dict]`` whose rows carry ``benchmark``,
``value``, ``unit``, ``target``, optional ``processes`` (how many processes the system under test
ran as; 1 when unsaid) and ``detail``; any other key is appended to the detail. A module does not
know the broker: it is run once per broker inside ``bench.support.on_broker``, and this harness
labels its rows. Each embedded broker is started once for all modules (fresh), and its peak
memory over the whole pass is a row of its own. ``KAFKA_BOOTSTRAP_SERVERS`` set: only that broker.

The rows are kept in ``bench/results.json`` per (benchmark, broker) and rendered to
``bench/results.md``: a summary with the brokers side by side, then every row with its detail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.support import (
    BROKER_LABELS,
    BROKERS,
    configured_bootstrap,
    on_broker,
    peak_rss_mib,
    running_broker,
)
from infra.logging import configure

HERE = Path(__file__).parent
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "results.md"
COLUMNS = ("benchmark", "broker", "processes", "value", "unit", "target", "detail")
SUMMARY = ("benchmark", "processes", "unit", "target")

Row = dict[str, object]


def _cell(value: object) -> str:
    text = f"{value:,}" if isinstance(value, int | float) and not isinstance(value, bool) else value
    return str(text).replace("|", "\\|")


def _label(row: Row) -> str:
    return BROKER_LABELS.get(str(row.get("broker", "")), str(row.get("broker", "")))


def table_lines(rows: list[Row]) -> list[str]:
    lines = []
    for row in rows:
        extra = ", ".join(f"{k} {_cell(v)}" for k, v in row.items() if k not in COLUMNS)
        detail = "; ".join(d for d in (str(row.get("detail", "")), extra) if d)
        cells = [_cell(row.get(col, "")) for col in COLUMNS[2:-1]]
        lines.append("| " + " | ".join([_cell(row["benchmark"]), _label(row), *cells, detail]))
        lines[-1] += " |"
    return lines


def _header(columns: tuple[str, ...] | list[str]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def render(rows: list[Row]) -> str:
    return "\n".join(_header(COLUMNS) + table_lines(rows))


def side_by_side(rows: list[Row]) -> str:
    """One line per benchmark, a value column per broker (in the order the brokers ran)."""
    seen = {str(r.get("broker", "")) for r in rows}
    brokers = [b for b in BROKER_LABELS if b in seen] + sorted(seen - set(BROKER_LABELS))
    by_name: dict[tuple[str, str], dict[str, Row]] = {}
    for row in rows:
        key = (str(row["benchmark"]), str(row.get("processes", 1)))
        by_name.setdefault(key, {})[str(row.get("broker", ""))] = row
    lines = _header([*SUMMARY, *(BROKER_LABELS.get(b, b) for b in brokers)])
    for (name, processes), per_broker in by_name.items():
        first = next(iter(per_broker.values()))
        cells = [name, processes, str(first.get("unit", "")), str(first.get("target", ""))]
        cells += [_value(per_broker.get(b)) for b in brokers]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _value(row: Row | None) -> str:
    if row is None:
        return ""
    value = _cell(row.get("value", ""))
    return f"{value} ({row['ratio']})" if "ratio" in row else value


def merged(previous: list[Row], rows: list[Row]) -> list[Row]:
    """The saved rows with these replacing their namesakes per broker (a partial run keeps the
    rest, in their place; new ones are added at the end)."""
    fresh = {(r["benchmark"], r.get("broker")): r for r in rows}
    kept = [fresh.pop((r["benchmark"], r.get("broker")), r) for r in previous]
    return kept + [r for r in rows if (r["benchmark"], r.get("broker")) in fresh]


def namesakes(rows: list[Row], fresh: list[Row]) -> list[str]:
    """The names of ``fresh`` rows already in ``rows`` for the same broker: results are kept per
    (benchmark, broker), so a second module's row of that name would replace the first's."""
    seen = {(r["benchmark"], r.get("broker")) for r in rows}
    return sorted({str(r["benchmark"]) for r in fresh if (r["benchmark"], r.get("broker")) in seen})


def _document(rows: list[Row]) -> str:
    return (
        "# Benchmark results\n\nProduced by `make bench` (2 cores shared by the broker, "
        "Postgres, the system under test and the load generator; ratios are against a "
        "reference measured in the same run). `processes`: how many processes the system under "
        "test ran as.\n\n## Side by side\n\n"
        + side_by_side(rows)
        + "\n\n## Every row\n\n"
        + render(rows)
        + "\n"
    )


def _load_previous() -> list[Row]:
    try:
        loaded = json.loads(RESULTS_JSON.read_text())
    except (OSError, ValueError):
        return []
    return [r for r in loaded if isinstance(r, dict) and "benchmark" in r]


@contextlib.contextmanager
def _broker_pass(kind: str, rows: list[Row]) -> Iterator[None]:
    """Broker ``kind`` for every module of the pass; its peak memory is a row at the end."""
    if kind == "configured":
        with on_broker(kind):
            yield
        return
    with running_broker(kind, fresh=True) as service, on_broker(kind):
        yield
        if service.pid:
            rows.append(
                {
                    "benchmark": "peak memory: the embedded broker",
                    "broker": kind,
                    "processes": 1,
                    "value": round(peak_rss_mib(service.pid), 1),
                    "unit": "MiB",
                    "target": "reference",
                    "detail": "VmHWM of the broker process over every benchmark of this run"
                    + (" (JVM: -Xmx512m, SerialGC)" if kind == "kafka" else ""),
                }
            )


def run_modules(
    modules: list[str], brokers: list[str], save: Callable[[list[Row]], None]
) -> tuple[list[Row], int]:
    """Every module on every broker; ``save`` gets the rows so far after each (a run stopped
    midway keeps what it measured)."""
    rows: list[Row] = []
    failed = 0
    for kind in brokers:
        with _broker_pass(kind, rows):
            for name in modules:
                sys.stderr.write(f"running {name} on {BROKER_LABELS[kind]}…\n")
                began = time.monotonic()
                try:
                    module = importlib.import_module(f"bench.{name}")
                    got: list[Row] = asyncio.run(module.run())
                except Exception:  # one broken benchmark must not hide the others
                    failed += 1
                    traceback.print_exc()
                    got = [{"benchmark": name, "value": "failed", "detail": "see stderr"}]
                took = time.monotonic() - began
                sys.stderr.write(f"{name} on {BROKER_LABELS[kind]}: {took:.0f} s\n")
                # the harness knows the broker: a module's own guess does not override it
                labelled = [{"processes": 1, **row, "broker": kind} for row in got]
                if taken := namesakes(rows, labelled):
                    failed += 1
                    sys.stderr.write(f"{name} measured again what another module did: {taken}\n")
                rows.extend(labelled)
                save(rows)
    save(rows)  # with the brokers' peak memory
    return rows, failed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="simfleet benchmarks")
    parser.add_argument("modules", nargs="*", help="bench_* modules (default: all)")
    parser.add_argument("--broker", choices=BROKERS, help="one broker only (default: both)")
    args = parser.parse_args(argv)
    # the components a benchmark runs in this process log warnings only, to stderr (the table
    # is stdout; their per-push debug lines would bury it)
    configure("auto", "WARNING")
    modules = args.modules or sorted(p.stem for p in HERE.glob("bench_*.py"))
    if configured_bootstrap():
        brokers = ["configured"]
    else:
        brokers = [args.broker] if args.broker else list(BROKERS)
    previous = [  # a module's "failed" row goes once it is run again on that broker
        r
        for r in (_load_previous() if args.modules or args.broker else [])
        if not (r["benchmark"] in modules and r.get("broker") in brokers)
    ]

    def save(rows: list[Row]) -> None:
        saved = merged(previous, rows)
        RESULTS_JSON.write_text(json.dumps(saved, indent=1, ensure_ascii=False, default=str) + "\n")
        RESULTS_MD.write_text(_document(saved))

    rows, failed = run_modules(modules, brokers, save)
    sys.stdout.write(side_by_side(rows) + "\n\n" + render(rows) + "\n")
    return 1 if failed else 0


def print_table(rows: list[Row]) -> None:
    """For a module run as a script (``python -m bench.bench_x``): its rows, unlabelled."""
    sys.stdout.write(render(rows) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
