"""One embedded PostgreSQL data directory with the binaries and account that serve it: its
directories, its password (SCRAM, for every connection: ``HBA``), and running ``initdb``,
``pg_ctl`` and single-user ``postgres`` as the server's account.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from infra.dev_secrets import stored_secret
from infra.embedded.postgres_server import (
    collect_orphans,
    own,
    reachable,
    server_dir_for,
    socket_dir_for,
)
from infra.embedded.service import EmbeddedInfraError, forget_state, log_tail, pid_alive

DB_USER = "simfleet"
PASSWORD_NAME = "postgres_password"  # noqa: S105 - its key in dev-secrets.json
HBA = """# simfleet: a password (SCRAM) for every connection, over the socket or TCP
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128 scram-sha-256
"""


@dataclass(frozen=True)
class PgCluster:
    """One data directory and the binaries and account that serve it."""

    bindir: Path
    pg_dir: Path  # ours, in the state dir: pid file, pg_ctl's log
    account: pwd.struct_passwd | None

    @property
    def server_dir(self) -> Path:
        return server_dir_for(self.pg_dir, self.account)

    @property
    def socket_dir(self) -> Path:
        return socket_dir_for(self.server_dir)

    @property
    def data(self) -> Path:
        return self.server_dir / "data"

    @property
    def server_log(self) -> Path:
        return self.server_dir / "postgres.log"

    @property
    def ctl_log(self) -> Path:
        return self.pg_dir / "pg_ctl.log"

    def prepare_dirs(self) -> None:
        """Our directory, and the server's and its socket's: owned by the server account, 0700."""
        account = self.account
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        if account is not None:
            if not reachable(self.bindir, account):
                raise EmbeddedInfraError(
                    f"running as root, the server account {account.pw_name!r} cannot reach "
                    f"{self.bindir}: install Debian's postgresql package or set "
                    "DATABASE_URL=postgresql://… to use an existing server"
                )
            collect_orphans()
            self.server_dir.parent.mkdir(mode=0o755, exist_ok=True)  # SERVER_ROOT
            own(self.server_dir, account, 0o700)
            (self.server_dir / "owner").write_text(str(self.pg_dir))
            # ...and own its tree, which an earlier run as another account may have created
            for root, dirs, files in os.walk(self.server_dir):
                for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.lchown(name, account.pw_uid, account.pw_gid)
        own(self.socket_dir, account, 0o700)

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


def with_password(cluster: PgCluster, state_dir: Path, *, stale_pid: bool) -> str:
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
