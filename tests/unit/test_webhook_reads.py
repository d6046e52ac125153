"""Every type the webhook consumer's topics carry (read off ``events.topics``) is declared either
handled or ignored with a reason; the handled ones are the only ones decoded, and each lands
where the consumer acts on it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from aiokafka import ConsumerRecord

from consumers.webhooks.reads import (
    HANDLED_DECODER,
    IGNORED,
    SOURCES,
    WANTED_TYPES,
    Handled,
    sorted_batch,
)
from events import codec
from events.envelope import Event
from events.reseller import ResellerCreated, WebhookEndpointEnabled
from events.topics import event_classes
from infra.dead_letters import DeadLetters, decode_wanted
from tests.support.event_examples import example

HANDLED = event_classes(Handled)
T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)


def carried() -> set[type[Event]]:
    return {cls for topic in SOURCES for cls in topic.members}


def test_every_type_of_every_source_topic_is_handled_or_ignored_with_a_reason() -> None:
    undeclared = carried() - set(HANDLED) - set(IGNORED)
    assert not undeclared, f"declare these handled or ignored: {sorted(map(str, undeclared))}"
    assert not set(HANDLED) & set(IGNORED)
    assert all(reason.strip() for reason in IGNORED.values())


def test_nothing_is_declared_that_the_topics_do_not_carry() -> None:
    assert set(HANDLED) | set(IGNORED) <= carried()


def test_the_wanted_types_are_the_handled_ones_read_off_their_classes() -> None:
    assert {cls.event_type() for cls in HANDLED} == WANTED_TYPES
    assert not WANTED_TYPES & {cls.event_type() for cls in IGNORED}


def test_each_handled_type_lands_in_one_bucket_in_its_order() -> None:
    events = [cast(Handled, example(cls, n)) for n, cls in enumerate(HANDLED)]
    batch = sorted_batch(events)
    buckets: list[list[Event]] = [
        list(batch.changes),
        list(batch.enabled),
        list(batch.resends),
        list(batch.retries),
    ]
    assert sorted(e.id for bucket in buckets for e in bucket) == sorted(e.id for e in events)
    changes = {e.id for e in batch.changes}
    assert [e.id for e in batch.changes] == [e.id for e in events if e.id in changes]
    assert len(changes) == 7
    assert len(batch.enabled) == len(batch.resends) == len(batch.retries) == 1


class Parking:
    def __init__(self) -> None:
        self.parked: list[int] = []

    async def park(self, rec: Any, *, headers: Any, error: Exception, event_id: Any) -> None:
        self.parked.append(rec.offset)


def record(offset: int, value: bytes, event_type: str) -> ConsumerRecord[Any, Any]:
    headers = [("ce_type", event_type.encode())]
    return ConsumerRecord("reseller.registry", 0, offset, 0, 0, None, value, None, 0, 0, headers)


async def test_an_ignored_type_is_never_parsed_and_a_mislabelled_one_is_parked() -> None:
    created = ResellerCreated.create(producer="test", time=T0, reseller_id="acme", name="Acme")
    assert ResellerCreated in IGNORED
    dead = Parking()
    records = [
        record(0, b"not json", created.type),  # skipped by its header: never read
        # labelled a handled type, carries an ignored one: refused, not acted on as either
        record(1, codec.encode(created), WebhookEndpointEnabled.event_type()),
    ]

    found = await decode_wanted(
        records, WANTED_TYPES, cast(DeadLetters, dead), decoder=HANDLED_DECODER
    )

    assert found == []
    assert dead.parked == [1]
