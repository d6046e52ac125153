"""Reseller token uses: coalesced per token into ``reseller.token_used`` events, kept when Kafka
refuses, and read by the audit as one row per path (``producers.token_uses``, the pure half of
``projections.audit``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from events.envelope import Event
from events.reseller import ResellerTokenUsed
from infra.bus import BrokerUnavailable
from infra.settings import ResellerApiSettings
from producers.token_uses import MAX_PATHS, TokenUses
from projections.audit import entries_of, group_commands

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class TickingClock:
    """A second later on every reading."""

    def __init__(self) -> None:
        self.at = START

    def now(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.refusing = False

    async def emit(self, event: Event) -> None:
        if self.refusing:
            raise BrokerUnavailable("down")
        self.events.append(event)


def used(sink: Sink) -> list[ResellerTokenUsed]:
    return [e for e in sink.events if isinstance(e, ResellerTokenUsed)]


async def test_a_busy_token_is_one_event_per_flush_counting_each_path() -> None:
    sink = Sink()
    uses = TokenUses(sink.emit, TickingClock(), flush_s=30)
    for _ in range(50):
        uses.record("acme", "tok-1", "ops", "GET", "/reseller/v1/sims")
    uses.record("acme", "tok-1", "ops", "POST", "/reseller/v1/recover")
    uses.record("zeta", "tok-9", "night", "GET", "/portal/sms")

    assert sink.events == []  # nothing on the request's path
    assert await uses.flush() == 2

    acme, zeta = used(sink)
    assert (acme.subject, acme.data.requested_by, acme.data.requests) == (
        "acme",
        "reseller:acme/ops",
        51,
    )
    sims, recover = acme.data.uses
    assert (sims.method, sims.path, sims.requests) == ("GET", "/reseller/v1/sims", 50)
    assert sims.last_at - sims.first_at == timedelta(seconds=49)
    assert (recover.method, recover.requests) == ("POST", 1)
    assert zeta.data.requested_by == "reseller:zeta/night"
    assert await uses.flush() == 0  # nothing new, nothing sent


async def test_a_batch_closes_at_its_path_limit_and_nothing_is_lost() -> None:
    sink = Sink()
    uses = TokenUses(sink.emit, TickingClock(), flush_s=30)
    for n in range(MAX_PATHS + 5):
        uses.record("acme", "tok-1", "ops", "GET", f"/reseller/v1/sms/m-{n}")
    await uses.flush()

    first, second = used(sink)
    assert (len(first.data.uses), len(second.data.uses)) == (MAX_PATHS, 5)
    assert first.id != second.id
    assert sum(e.data.requests for e in (first, second)) == MAX_PATHS + 5


async def test_batches_kafka_refused_are_published_by_a_later_flush_once() -> None:
    sink = Sink()
    uses = TokenUses(sink.emit, TickingClock(), flush_s=30)
    uses.record("acme", "tok-1", "ops", "GET", "/reseller/v1/sims")
    sink.refusing = True
    assert await uses.flush() == 0
    uses.record("acme", "tok-1", "ops", "GET", "/reseller/v1/endpoints")
    sink.refusing = False
    assert await uses.flush() == 2

    assert [[u.path for u in e.data.uses] for e in used(sink)] == [
        ["/reseller/v1/sims"],
        ["/reseller/v1/endpoints"],
    ]


async def test_the_audit_reads_a_batch_as_one_row_per_path_with_its_request_count() -> None:
    sink = Sink()
    uses = TokenUses(sink.emit, TickingClock(), flush_s=30)
    for path in ("/reseller/v1/sims", "/reseller/v1/sims", "/portal/activity"):
        uses.record("acme", "tok-1", "ops", "GET", path)
    await uses.flush()
    [event] = used(sink)

    rows = group_commands(entries_of(event))

    assert [(r.first.action, r.first.actor, r.target, r.events) for r in rows] == [
        ("use-token", "reseller:acme/ops", "GET /reseller/v1/sims", 2),
        ("use-token", "reseller:acme/ops", "GET /portal/activity", 1),
    ]
    assert [r.first.command_id for r in rows] == [f"{event.id}#0", f"{event.id}#1"]
    assert {s for r in rows for s in r.subjects} == {"acme"}


def test_a_token_use_carries_no_token() -> None:
    fields = set(ResellerTokenUsed.payload_model().model_fields)
    assert not {"token", "token_hash", "secret"} & fields


@pytest.mark.parametrize("flush_s", [0, -1, 3601])
def test_the_flush_interval_is_bounded(flush_s: float) -> None:
    with pytest.raises(ValidationError):
        ResellerApiSettings(use_flush_s=flush_s)


async def test_the_running_flusher_publishes_without_being_asked() -> None:
    sink = Sink()
    uses = TokenUses(sink.emit, TickingClock(), flush_s=0.01)
    flusher = asyncio.create_task(uses.run())
    try:
        uses.record("acme", "tok-1", "ops", "GET", "/portal/")
        for _ in range(500):  # polled, not timed: only that it happens
            if sink.events:
                break
            await asyncio.sleep(0.01)
    finally:
        flusher.cancel()
    [event] = used(sink)
    assert event.data.uses[0].path == "/portal/"
