"""The ``--help`` of every ``simfleet`` command, as operators read it, against the checked-in
copy: moving commands between modules changes none of it (names, order, options, wording).

A change to the CLI that is meant updates the copy: ``UPDATE_CLI_HELP=1 pytest`` this file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import typer
from typer.testing import CliRunner

from simfleet.cli import app

EXPECTED = Path(__file__).with_name("cli_help.txt")
ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def command_paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


def every_help() -> str:
    runner = CliRunner()
    pages = []
    for path in command_paths(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"], env=ENV)
        assert result.exit_code == 0, (path, result.output)
        pages.append(f"=== simfleet {' '.join(path)}\n{result.output}")
    return "\n".join(pages)


def test_every_command_help_is_unchanged() -> None:
    shown = every_help()
    if os.environ.get("UPDATE_CLI_HELP"):
        EXPECTED.write_text(shown)
    assert shown == EXPECTED.read_text()
