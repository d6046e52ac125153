"""Where a process finds its broker and database: the configured ones, otherwise embedded
processes of its own (never in production)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from infra.embedded import broker as embedded_broker
from infra.embedded import postgresql as embedded_postgresql
from infra.settings import TANSU_FETCH_WAIT_MS, TANSU_MAX_PARTITIONS, KafkaSettings, Settings


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    database_url: str
    embedded: tuple[str, ...] = ()


def without_password(url: str) -> str:
    """A database URL fit to print: ``postgresql://user:***@host/db``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


@contextlib.contextmanager
def resolve_endpoints(settings: Settings, *, reuse: bool = False) -> Iterator[Endpoints]:
    """Configured infrastructure where set, otherwise embedded processes stopped on exit
    (never in production: it names its own broker and database or does not start)."""
    if settings.env == "production":
        refuse_embedded(settings)
    with contextlib.ExitStack() as stack:
        started = []
        bootstrap = settings.kafka.kafka_bootstrap_servers
        if not bootstrap:
            kind = embedded_broker.chosen(settings.kafka.embedded_broker)
            if kind == "tansu":
                suit_tansu(settings.kafka)
            broker = stack.enter_context(
                embedded_broker.embedded_broker(kind, settings.state_dir, reuse=reuse)
            )
            bootstrap = broker.url
            started.append(f"kafka ({'Apache Kafka' if kind == 'kafka' else 'Tansu'}) {broker.url}")
        dsn_secret = settings.postgres.database_url
        dsn = dsn_secret.get_secret_value() if dsn_secret else None
        if not dsn:
            postgres = stack.enter_context(
                embedded_postgresql.embedded_postgres(settings.state_dir, reuse=reuse)
            )
            dsn = postgres.url
            started.append(f"postgres {without_password(postgres.url)}")
        yield Endpoints(bootstrap, dsn, tuple(started))


def refuse_embedded(settings: Settings) -> None:
    unset = [
        name
        for name, value in (
            ("KAFKA_BOOTSTRAP_SERVERS", settings.kafka.kafka_bootstrap_servers),
            ("DATABASE_URL", settings.postgres.database_url),
        )
        if not value
    ]
    if unset:
        raise RuntimeError(f"production starts no embedded infrastructure: set {unset}")


def suit_tansu(kafka: KafkaSettings) -> None:
    kafka.kafka_idempotence = False  # Tansu refuses InitProducerId
    if "kafka_fetch_wait_ms" not in kafka.model_fields_set:
        kafka.kafka_fetch_wait_ms = TANSU_FETCH_WAIT_MS
    if "kafka_max_partitions" not in kafka.model_fields_set:
        kafka.kafka_max_partitions = TANSU_MAX_PARTITIONS
