"""The session's broker and PostgreSQL started side by side, as soon as the tests are collected.

Started one after the other by their fixtures, the broker's JVM and Postgres (with the template
database's migrations) cost their sum before the first test; neither needs the other, so when
the collected tests need both, each starts in its own thread and the fixtures take the results.
A start that failed fails the fixtures that wait for it, with its error (no test is skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.support.infrastructure import database_url, kafka_bootstrap

Prepare = Callable[[str], Coroutine[Any, Any, str]]


class StartingTogether:
    """``start`` begins both; ``kafka()`` / ``postgres()`` wait for one (None: not started)."""

    def __init__(self) -> None:
        self.stack = contextlib.ExitStack()  # stops what started, the broker first
        self._kafka: Future[str] | None = None
        self._postgres: Future[tuple[str, str]] | None = None

    def start(self, state_dir: Path, prepare_template: Prepare) -> None:
        postgres_stack = self.stack.enter_context(contextlib.ExitStack())
        kafka_stack = self.stack.enter_context(contextlib.ExitStack())
        threads = self.stack.enter_context(ThreadPoolExecutor(2, thread_name_prefix="infra"))

        def postgres() -> tuple[str, str]:
            server = database_url(postgres_stack, state_dir)
            return server, asyncio.run(prepare_template(server))

        self._postgres = threads.submit(postgres)
        self._kafka = threads.submit(kafka_bootstrap, kafka_stack, state_dir)

    def kafka(self) -> str | None:
        return None if self._kafka is None else self._kafka.result()

    def postgres(self) -> tuple[str, str] | None:
        """The server's URL and the migrated template's."""
        return None if self._postgres is None else self._postgres.result()

    def close(self) -> None:
        self.stack.close()
