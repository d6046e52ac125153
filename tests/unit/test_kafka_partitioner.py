"""Records keep the partition the Java client and aiokafka's default partitioner give their key:
the producer's remembered hashes change the cost of placing a record, never its place."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from infra.kafka import placed_by_key


def test_a_key_lands_where_the_default_partitioner_puts_it() -> None:
    keys = [f"ep-{n}".encode() for n in range(200)] + [b"+4915112345678", "ünï".encode()]
    for count in (1, 3, 6, 12):
        partitions = list(range(count))
        for key in keys * 2:  # the second round from the remembered hashes
            assert placed_by_key(key, partitions, partitions) == DefaultPartitioner()(
                key, partitions, partitions
            )


def test_no_key_goes_to_an_available_partition() -> None:
    assert {placed_by_key(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
