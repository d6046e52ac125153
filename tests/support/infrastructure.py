"""Choose the Kafka broker and PostgreSQL server a test session runs against.

Order: an explicitly configured service (``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``), then
for Kafka the embedded broker ``EMBEDDED_BROKER`` chooses (auto: Apache Kafka where Java and its
jars are, which ``make test`` ensures; Tansu otherwise), for Postgres testcontainers when a Docker
engine answers, then the embedded server. Tests never skip for lack of infrastructure: if
nothing works, these functions raise.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

from infra.embedded.broker import chosen, embedded_broker
from infra.embedded.postgresql import embedded_postgres
from infra.embedded.service import EmbeddedInfraError
from infra.settings import TANSU_FETCH_WAIT_MS

__all__ = ["database_url", "docker_available", "kafka_bootstrap"]


def docker_available() -> bool:
    """True when a Docker engine answers a ping within two seconds."""
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


def kafka_bootstrap(stack: contextlib.ExitStack, state_dir: Path) -> str:
    """Bootstrap servers ("host:port") of a broker that lives until ``stack`` closes."""
    if configured := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return configured
    kind = os.environ.get("EMBEDDED_BROKER", "auto")
    try:
        if chosen(kind) == "tansu":
            # read by every Settings of this session and of the processes it starts
            os.environ["KAFKA_IDEMPOTENCE"] = "false"
            os.environ["KAFKA_FETCH_WAIT_MS"] = str(TANSU_FETCH_WAIT_MS)
        return stack.enter_context(embedded_broker(kind, state_dir)).url
    except EmbeddedInfraError as exc:
        raise RuntimeError(
            "no Kafka broker for the tests: KAFKA_BOOTSTRAP_SERVERS is unset and the embedded "
            f"broker (EMBEDDED_BROKER={kind}) failed: {exc}"
        ) from exc


def database_url(stack: contextlib.ExitStack, state_dir: Path) -> str:
    """A plain ``postgresql://`` URL (asyncpg accepts it) valid until ``stack`` closes."""
    if configured := os.environ.get("DATABASE_URL"):
        return configured
    if docker_available():
        from testcontainers.community.postgres import PostgresContainer

        container = PostgresContainer(
            "postgres:16", username="simfleet", password="simfleet", dbname="simfleet", driver=None
        )
        try:
            stack.enter_context(container)
            return str(container.get_connection_url())
        except Exception as exc:
            warnings.warn(
                f"Postgres testcontainer failed, using embedded Postgres: {exc}", stacklevel=2
            )
            with contextlib.suppress(Exception):
                container.stop()
    try:
        return stack.enter_context(embedded_postgres(state_dir, fast_unsafe=True)).url
    except EmbeddedInfraError as exc:
        raise RuntimeError(
            "no PostgreSQL for the tests: DATABASE_URL is unset, no Docker engine answered, "
            f"and the embedded server failed: {exc}"
        ) from exc
