"""A batch consumer's application of a batch: one bad event is parked, not re-read forever."""

from __future__ import annotations

from typing import Any, cast

from aiokafka import ConsumerRecord

from infra.dead_letters import DeadLetters, apply_isolating


def record(offset: int) -> ConsumerRecord[Any, Any]:
    headers = [("ce_id", f"event-{offset}".encode())]
    return ConsumerRecord("sms.inbound", 0, offset, 0, 0, None, b"{}", None, 0, 0, headers)


class Parking:
    def __init__(self) -> None:
        self.parked: list[tuple[int, str | None, str]] = []

    async def park(self, rec: Any, *, headers: Any, error: Exception, event_id: Any) -> None:
        self.parked.append((rec.offset, event_id, repr(error)))


async def test_a_failing_batch_is_applied_one_by_one_and_the_bad_event_parked() -> None:
    applied: list[list[str]] = []
    outages = [ConnectionResetError("postgres restarting")]

    async def apply(items: list[str]) -> None:
        if outages:
            raise outages.pop()  # waited out, then the batch is tried again
        if "bad" in items:
            raise ValueError("violates a check")
        applied.append(items)

    dead = Parking()
    items = [(record(0), "a"), (record(1), "bad"), (record(2), "c")]
    await apply_isolating(items, apply, cast(DeadLetters, dead), retry_s=0)

    assert applied == [["a"], ["c"]]
    assert dead.parked == [(1, "event-1", "ValueError('violates a check')")]


async def test_a_good_batch_is_applied_at_once() -> None:
    applied: list[list[str]] = []

    async def apply(items: list[str]) -> None:
        applied.append(items)

    dead = Parking()
    await apply_isolating([(record(0), "a"), (record(1), "b")], apply, cast(DeadLetters, dead))
    assert applied == [["a", "b"]]
    assert dead.parked == []
