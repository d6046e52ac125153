"""The embedded Apache Kafka's cluster id is one ``kafka-storage format`` can read."""

import uuid
from collections.abc import Iterator

import pytest

from infra.embedded import kafka_nodes


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    dashed = uuid.UUID(bytes=b"\xf8" + bytes(15))  # URL-safe base64 of 0xF8… starts with "-"
    plain = uuid.UUID(bytes=b"\x01" + bytes(15))
    drawn: Iterator[uuid.UUID] = iter([dashed, plain])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))

    cluster_id = kafka_nodes.new_cluster_id()

    assert cluster_id == "AQAAAAAAAAAAAAAAAAAAAA"
    assert len(cluster_id) == 22
