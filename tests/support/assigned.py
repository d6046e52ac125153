"""Wait until a started broker's group consumers hold their partitions.

On Apache Kafka a consumer group's join and assignment take a moment (longer while the machine is
busy); a test that times what follows, or that publishes to "latest", starts the clock after it.
"""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker

from tests.support.eventually import eventually


def _group_consumers(broker: KafkaBroker) -> list[Any]:
    found: list[Any] = []
    for subscriber in broker.subscribers:
        found += getattr(subscriber, "consumer_subgroup", None) or []
        if (consumer := getattr(subscriber, "consumer", None)) is not None:
            found.append(consumer)
    return found


async def until_assigned(broker: KafkaBroker, within: float = 60.0) -> None:
    """Every consumer of ``broker`` has at least one partition assigned."""

    async def unassigned() -> int:
        return sum(1 for c in _group_consumers(broker) if not c.assignment())

    await eventually(unassigned, until=lambda n: n == 0, within=within, interval=0.1)
