"""A user's mistake on the command line: one line saying what is wrong and what to do, exit 2.
The documented formats (README's table, ``.env.example``) are ones that parse."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infra.settings import Settings
from infra.settings_reference import ENV_EXAMPLE, README

SIMFLEET = str(Path(sys.executable).parent / "simfleet")
_EXAMPLE = re.compile(r"^#\s*([A-Z][A-Z0-9_]*)=(.*?)\s*(?:\s#.*)?$")
_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| (.+?) \|")


def loads_with(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    Settings()
    monkeypatch.delenv(name)


def test_every_value_in_env_example_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    examples = [
        m.groups()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if (m := _EXAMPLE.match(line)) and m.group(2)
    ]
    assert len(examples) > 40
    for name, value in examples:
        loads_with(monkeypatch, name, value)


def test_every_default_in_the_readme_table_parses_when_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [m.groups() for line in README.read_text().splitlines() if (m := _ROW.match(line))]
    assert len(rows) > 40
    for name, shown in rows:
        if shown == "unset" or shown.startswith("(secret"):
            continue
        loads_with(monkeypatch, name, shown.strip("`"))


def simfleet(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIMFLEET, *args],
        env={**os.environ, "SIMFLEET_STATE_DIR": "/nonexistent/simfleet-state", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["config", "show"], {"WEBHOOK_FAST_DELAYS_S": "1,2,4,8"}, "WEBHOOK_FAST_DELAYS_S"),
        (["config", "show"], {"SIMFLEET_BRIDGE_PORT": "eighty"}, "SIMFLEET_BRIDGE_PORT"),
        (["replay", "projection", "nope"], {}, "unknown projection 'nope'; known: archive"),
        (["replay", "verify", "sims"], {}, "no running simfleet to attach to"),
    ],
)
def test_a_user_mistake_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str], says: str
) -> None:
    done = simfleet(*args, **env)

    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert "pydantic" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_config_check_names_the_variable_without_validation_library_noise() -> None:
    done = simfleet("config", "check", KAFKA_PARTITIONS="sms.inbound=12")

    assert done.returncode == 1
    assert done.stderr.startswith("invalid configuration: KAFKA_PARTITIONS cannot be read")
    assert "errors.pydantic.dev" not in done.stderr
    assert "EnvSettingsSource" not in done.stderr
