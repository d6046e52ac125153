"""Infrastructure for benchmarks: configured services if set, else the embedded ones."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import SecretStr

from infra import embedded_kafka, embedded_postgresql
from infra.kafka import ensure_topics
from infra.postgres import migrate
from infra.settings import KafkaSettings, PostgresSettings, Settings

STATE_DIR = Path(".simfleet/bench")


@contextlib.asynccontextmanager
async def bench_settings() -> AsyncIterator[Settings]:
    """Settings on real infrastructure with a fresh topic prefix, migrated and topics created."""
    with contextlib.ExitStack() as stack:
        configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        bootstrap = (
            configured
            or stack.enter_context(embedded_kafka.embedded_broker(STATE_DIR, reuse=True)).url
        )
        dsn = (
            os.environ.get("DATABASE_URL")
            or stack.enter_context(
                embedded_postgresql.embedded_postgres(STATE_DIR, reuse=True, fast_unsafe=True)
            ).url
        )
        settings = Settings(
            env="test",
            state_dir=STATE_DIR,
            kafka=KafkaSettings(
                kafka_bootstrap_servers=bootstrap,
                topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                kafka_session_timeout_ms=2000,
                kafka_heartbeat_interval_ms=400,
                # the embedded Tansu refuses InitProducerId, as in `simfleet run` on Tansu
                kafka_idempotence=bool(configured),
            ),
            postgres=PostgresSettings(database_url=SecretStr(dsn)),
        )
        await migrate(dsn)
        await ensure_topics(bootstrap, settings.kafka)
        yield settings


def dsn_of(settings: Settings) -> str:
    if settings.postgres.database_url is None:
        raise RuntimeError("bench settings always carry a database URL")
    return settings.postgres.database_url.get_secret_value()
