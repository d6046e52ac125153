"""The house's floors: every import points down (or within its own package).

    bench                          benchmarks: measure any part, the composition root included
    simfleet                       composition root and CLI: may import every flow
    dashboard | alerting           what operators see | what they are told: both read tables and
                                   emit no events (alerting reads the rotation breaker's state
                                   through producers); neither imports the other
    producers                      what turns the outside world and the clock into events
    consumers | projections        side effects | read tables: neither imports the other
    policies                       rules several flows apply alike (the rotation schedule, the
                                   webhook body's time format)
    sandbox                        the simulated carrier, gateways and reseller
    infra                          adapters: settings, Kafka, Postgres, HTTP clients, signing
    events                         the facts

What several flows share lives below all of them: producers, though a floor above the consumers,
import none of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FLOORS: dict[str, int] = {
    "bench": 8,
    "simfleet": 7,
    "dashboard": 6,
    "alerting": 6,
    "producers": 5,
    "consumers": 4,
    "projections": 4,
    "policies": 3,
    "sandbox": 2,
    "infra": 1,
    "events": 0,
}


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def arrows() -> list[tuple[str, str, str, str]]:
    """(file, its package, imported module, that module's package) for our own packages."""
    found = []
    for package in FLOORS:
        for path in (ROOT / package).rglob("*.py"):
            for module in imports_of(path):
                target = module.split(".")[0]
                if target in FLOORS and target != package:
                    found.append((str(path.relative_to(ROOT)), package, module, target))
    return found


def test_every_import_points_down() -> None:
    upward = [
        f"{file} imports {module}"
        for file, package, module, target in arrows()
        if FLOORS[target] > FLOORS[package]
    ]
    assert upward == []


def test_flows_on_one_floor_do_not_import_each_other() -> None:
    sideways = {
        (file, module)
        for file, package, module, target in arrows()
        if FLOORS[target] == FLOORS[package]
    }
    assert sideways == set()


def test_producers_import_no_consumer() -> None:
    """What a producer and a consumer share lives below both (policies, infra, events); a
    flow's clock-driven sweeps live with the flow and are wired by the composition root."""
    reaching = [
        f"{file} imports {module}"
        for file, package, module, target in arrows()
        if package == "producers" and target == "consumers"
    ]
    assert reaching == []


def test_infra_imports_no_flow_package() -> None:
    flows = {
        "producers",
        "consumers",
        "projections",
        "dashboard",
        "alerting",
        "sandbox",
        "simfleet",
        "bench",
    }
    assert [f"{f} imports {m}" for f, p, m, t in arrows() if p == "infra" and t in flows] == []
