"""A private embedded Postgres that a fault test stops and starts again: the session's server is
shared by every test and must not go down. Its URL survives a restart: fixed port, same data
directory, as an operator restarting the database would leave it."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from infra.embedded.postgresql import start_postgres
from infra.embedded.service import RunningService, free_port
from tests.conftest import STATE_DIR


class RestartablePostgres:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self._service: RunningService | None = None

    @property
    def url(self) -> str:
        assert self._service is not None, "not started"
        return self._service.url

    def start(self) -> None:
        self._service = start_postgres(self.state_dir, fast_unsafe=True, port=self.port)

    def stop(self) -> None:
        if self._service is not None:
            self._service.stop()
            self._service = None


@contextlib.contextmanager
def restartable_postgres() -> Iterator[RestartablePostgres]:
    """A started server, stopped and its data removed when the block ends."""
    pg = RestartablePostgres(STATE_DIR / f"pg-restart-{uuid.uuid4().hex[:8]}")
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(pg.state_dir, ignore_errors=True)
