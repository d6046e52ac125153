"""``KAFKA_BOOTSTRAP_SERVERS`` as the Kafka clients want it.

FastStream wraps a string into a one-element list, and aiokafka reads each list element as one
``host:port``: ``"a:9092,b:9092"`` became a single unreachable host. Split, every client can
bootstrap from any broker of a cluster that is still up.
"""

from __future__ import annotations


def servers(bootstrap: str) -> list[str]:
    """``"a:9092, b:9092"`` → ``["a:9092", "b:9092"]``."""
    return [part.strip() for part in bootstrap.split(",") if part.strip()]
