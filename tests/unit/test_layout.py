from pathlib import Path

import alerting
import events
import infra
from infra.postgres import load_migrations

ROOT = Path(__file__).resolve().parents[2]


def test_top_level_packages_are_ours_not_a_pypi_namesake() -> None:
    for package in (events, infra, alerting):
        assert package.__file__ is not None
        assert Path(package.__file__).resolve().is_relative_to(ROOT)


def test_migrations_are_numbered_in_order() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


def test_handlers_take_context_through_loop_context() -> None:
    """faststream's own Context (and the KafkaMessage annotation built on it) is resolved in a
    worker thread per message; infra.context resolves the same names on the event loop."""
    needles = ("import Context", "import AckPolicy, Context", "annotations import KafkaMessage")
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("consumers", "producers", "projections", "infra", "dashboard")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "context.py" and any(n in path.read_text() for n in needles)
    ]
    assert offenders == []
