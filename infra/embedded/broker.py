"""Which embedded broker ``simfleet`` starts when no ``KAFKA_BOOTSTRAP_SERVERS`` is set.

``EMBEDDED_BROKER=kafka`` is Apache Kafka (``infra.embedded.apache_kafka``: needs Java and the
jars of ``make kafka-jars``, ``infra.embedded.kafka_jars``), ``tansu`` the memory-only stand-in
shipped in a wheel (``infra.embedded.tansu``: no JVM needed), ``auto`` the first when it is here,
else the second.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from infra.embedded import apache_kafka, kafka_jars, tansu
from infra.embedded.service import EmbeddedInfraError, RunningService

BrokerKind = Literal["kafka", "tansu"]


def chosen(kind: str) -> BrokerKind:
    """The broker ``kind`` (auto | kafka | tansu) stands for on this machine."""
    if kind == "tansu":
        return "tansu"
    if kind == "kafka":
        if not kafka_jars.available():
            raise EmbeddedInfraError(
                f"EMBEDDED_BROKER=kafka but no Apache Kafka here "
                f"(jars expected in {kafka_jars.jars_dir()}): " + kafka_jars.MISSING_TOOLS
            )
        return "kafka"
    return "kafka" if kafka_jars.available() else "tansu"


def start(kind: str, state_dir: Path, *, reuse: bool = False) -> RunningService:
    if chosen(kind) == "kafka":
        return apache_kafka.start_kafka(state_dir, reuse=reuse)
    return tansu.start_broker(state_dir, reuse=reuse)


@contextlib.contextmanager
def embedded_broker(kind: str, state_dir: Path, *, reuse: bool = False) -> Iterator[RunningService]:
    """Run the chosen embedded broker for the duration of the ``with`` block."""
    service = start(kind, state_dir, reuse=reuse)
    try:
        yield service
    finally:
        service.stop()
