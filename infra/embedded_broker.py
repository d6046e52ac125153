"""Which embedded broker ``simfleet`` starts when no ``KAFKA_BOOTSTRAP_SERVERS`` is set.

``EMBEDDED_BROKER=kafka`` is Apache Kafka (``infra.embedded_apache_kafka``: needs Java and the
jars of ``make kafka-jars``), ``tansu`` the memory-only stand-in shipped in a wheel
(``infra.embedded_kafka``: no JVM needed), ``auto`` the first when it is here, else the second.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from infra import embedded_apache_kafka, embedded_kafka
from infra.embedded import EmbeddedInfraError, RunningService

BrokerKind = Literal["kafka", "tansu"]


def chosen(kind: str) -> BrokerKind:
    """The broker ``kind`` (auto | kafka | tansu) stands for on this machine."""
    if kind == "tansu":
        return "tansu"
    if kind == "kafka":
        if not embedded_apache_kafka.available():
            raise EmbeddedInfraError(
                f"EMBEDDED_BROKER=kafka but no Apache Kafka here "
                f"(jars expected in {embedded_apache_kafka.jars_dir()}): "
                + embedded_apache_kafka.MISSING_TOOLS
            )
        return "kafka"
    return "kafka" if embedded_apache_kafka.available() else "tansu"


def start(kind: str, state_dir: Path, *, reuse: bool = False) -> RunningService:
    if chosen(kind) == "kafka":
        return embedded_apache_kafka.start_kafka(state_dir, reuse=reuse)
    return embedded_kafka.start_broker(state_dir, reuse=reuse)


@contextlib.contextmanager
def embedded_broker(kind: str, state_dir: Path, *, reuse: bool = False) -> Iterator[RunningService]:
    """Run the chosen embedded broker for the duration of the ``with`` block."""
    service = start(kind, state_dir, reuse=reuse)
    try:
        yield service
    finally:
        service.stop()
