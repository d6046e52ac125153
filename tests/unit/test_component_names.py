"""The names ``simfleet run`` prints and ``simfleet workers NAME`` takes are the documented ones,
whatever the modules behind them are called."""

import re
from pathlib import Path

from simfleet.components import registered_components

ROOT = Path(__file__).resolve().parents[2]


def test_the_components_are_named_as_the_readme_shows_them_starting() -> None:
    started = re.search(r"^starting (.+)$", (ROOT / "README.md").read_text(), re.M)
    assert started is not None
    assert [c.name for c in registered_components()] == started.group(1).split(", ")
