"""The embedded PostgreSQL is closed to other local users: a generated password (SCRAM) on TCP
and on the socket, the password kept 0600 with the development secrets, the socket in a 0700
directory; and starting it as root loosens no directory of ours."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from infra.embedded.postgres_cluster import HBA
from infra.embedded.postgresql import embedded_postgres
from simfleet.endpoints import without_password

pytestmark = pytest.mark.integration

TEST_TMP = Path(__file__).resolve().parents[2] / ".simfleet" / "test-tmp"


@pytest.fixture
def private_home() -> Iterator[Path]:
    """A 0700 directory (a home) with a 0644 file in it, the state dir inside."""
    TEST_TMP.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="home-", dir=TEST_TMP))
    home.chmod(0o700)
    (home / ".env").write_text("GATEWAY_SECRET=private\n")
    (home / ".env").chmod(0o644)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def as_before_passwords(hba: Path, password_mark: Path) -> None:
    hba.write_text("host all all 127.0.0.1/32 trust\n")
    password_mark.unlink()


def read(path: Path) -> str:
    return path.read_text()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def refused(**connect: object) -> bool:
    try:
        conn = await asyncpg.connect(database="simfleet", user="simfleet", timeout=5, **connect)
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
        return True
    except OSError as err:  # e.g. "password authentication failed" surfaces as auth errors
        raise AssertionError(f"unexpected: {err!r}") from err
    await conn.close()
    return False


async def test_every_connection_needs_the_generated_password(private_home: Path) -> None:
    state_dir = private_home / "project" / ".simfleet"
    with embedded_postgres(state_dir, fast_unsafe=True) as pg:
        port = int(pg.url.rsplit(":", 1)[1].split("/")[0])
        secrets_file = state_dir / "dev-secrets.json"
        password = json.loads(secrets_file.read_text())["postgres_password"]
        assert len(password) >= 24
        assert f":{password}@" in pg.url
        assert password not in without_password(pg.url)
        assert mode(secrets_file) == 0o600
        assert mode(state_dir / "postgres" / "instance.json") == 0o600

        assert await refused(host="127.0.0.1", port=port)  # no password: refused
        assert await refused(host="127.0.0.1", port=port, password="guess-guess")
        conn = await asyncpg.connect(pg.url)
        try:
            sockets = await conn.fetchval("SHOW unix_socket_directories")
            assert await conn.fetchval("SHOW password_encryption") == "scram-sha-256"
            is_super = await conn.fetchval(
                "SELECT rolsuper FROM pg_roles WHERE rolname = 'simfleet'"
            )
        finally:
            await conn.close()
        assert is_super  # which is exactly why nobody else may log in
        socket_dir = Path(sockets.strip("'"))
        assert mode(socket_dir) == 0o700
        assert await refused(host=str(socket_dir), port=port)  # the socket asks too
        conn = await asyncpg.connect(
            host=str(socket_dir), port=port, user="simfleet", password=password, database="simfleet"
        )
        await conn.close()


async def test_starting_as_root_touches_no_parent_directory(private_home: Path) -> None:
    state_dir = private_home / "project" / ".simfleet"
    state_dir.mkdir(parents=True)
    before = {p: mode(p) for p in (private_home, private_home / "project", state_dir)}
    env_mode = mode(private_home / ".env")
    with embedded_postgres(state_dir, fast_unsafe=True) as pg:
        conn = await asyncpg.connect(pg.url)
        try:
            data_dir = Path(await conn.fetchval("SHOW data_directory"))
        finally:
            await conn.close()
    assert {p: mode(p) for p in before} == before  # a 0700 home stays 0700
    assert mode(private_home / ".env") == env_mode
    if os.geteuid() == 0:
        # the server account got a directory of its own instead of a way into ours
        assert private_home not in data_dir.parents
        assert mode(data_dir.parent) == 0o700
    else:
        assert data_dir == state_dir.absolute() / "postgres" / "data"


async def test_a_cluster_from_before_passwords_is_closed_on_the_next_start(
    private_home: Path,
) -> None:
    state_dir = private_home / ".simfleet"
    with embedded_postgres(state_dir, fast_unsafe=True) as pg:
        conn = await asyncpg.connect(pg.url)
        try:
            hba = Path(await conn.fetchval("SHOW hba_file"))
            await conn.execute("ALTER ROLE simfleet PASSWORD NULL")
        finally:
            await conn.close()
    # as an older version left it: trust on loopback, no password, no record of one
    as_before_passwords(hba, state_dir / "postgres" / "password.sha256")

    with embedded_postgres(state_dir, fast_unsafe=True) as pg:
        port = int(pg.url.rsplit(":", 1)[1].split("/")[0])
        assert await refused(host="127.0.0.1", port=port)
        conn = await asyncpg.connect(pg.url)
        await conn.close()
    assert read(hba) == HBA
