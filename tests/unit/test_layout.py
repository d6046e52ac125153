from pathlib import Path

import events
import infra
from infra.postgres import load_migrations

ROOT = Path(__file__).resolve().parents[2]


def test_top_level_packages_are_ours_not_a_pypi_namesake() -> None:
    assert events.__file__ is not None
    assert infra.__file__ is not None
    assert Path(events.__file__).resolve().is_relative_to(ROOT)
    assert Path(infra.__file__).resolve().is_relative_to(ROOT)


def test_migrations_are_numbered_in_order() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1
