"""Server directories left by a deleted checkout are collected; one being started is not."""

import os
from pathlib import Path

import pytest

from infra.embedded import postgres_server


def server(root: Path, name: str, pid_text: str | None) -> Path:
    directory = root / name
    (directory / "data").mkdir(parents=True)
    (directory / "owner").write_text(str(root / "gone" / name))  # its checkout was deleted
    if pid_text is not None:
        (directory / "data" / "postmaster.pid").write_text(pid_text)
    return directory


def test_only_servers_that_cannot_be_running_are_collected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_server, "SERVER_ROOT", tmp_path)
    stopped = server(tmp_path, "stopped", None)
    dead = server(tmp_path, "dead", "999999999\n/data\n")
    starting = server(tmp_path, "starting", "")  # pg_ctl has created the pid file, not filled it
    alive = server(tmp_path, "alive", f"{os.getpid()}\n")

    postgres_server.collect_orphans()

    assert not stopped.exists()
    assert not dead.exists()
    assert starting.exists()
    assert alive.exists()
