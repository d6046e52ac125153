"""How the provisioning group works through one SIM's line of events: outages are waited out,
other failures parked (waiting for the broker if need be), and the line always goes on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from consumers import provisioning
from consumers.carrier_deps import CarrierDeps
from events.envelope import Event
from events.sim import SyncRequested
from infra.bus import BrokerUnavailable
from infra.dead_letters import DeadLetters
from infra.outages import is_outage

ICCID = "89012608822000000011"


def request(ref: str) -> Event:
    return SyncRequested.create(producer="t", time=datetime.now(UTC), iccid=ICCID, ref=ref)


def record(offset: int) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord("sim.lifecycle", 0, offset, 0, 0, ICCID.encode(), b"{}", None, 0, 0, [])


class Parking:
    """A DeadLetters stand-in: the broker refuses the first ``refusals`` parks."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.parked: list[tuple[str | None, str]] = []

    async def park(self, _record: Any, *, headers: Any, error: Exception, event_id: Any) -> None:
        if self.refusals:
            self.refusals -= 1
            raise BrokerUnavailable("broker away")
        self.parked.append((event_id, str(error)))


async def test_a_line_waits_out_outages_parks_a_bug_and_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(provisioning, "RETRY_S", 0.0)
    first, broken, last = request("1"), request("2"), request("3")
    handled: list[str] = []
    outages = [ConnectionRefusedError("postgres restarting"), asyncpg.CannotConnectNowError()]

    async def handler(event: Event, _deps: CarrierDeps) -> None:
        if event is first and outages:
            raise outages.pop(0)
        if event is broken:
            raise KeyError("a bug")
        handled.append(event.id)

    monkeypatch.setitem(provisioning.HANDLERS, SyncRequested.event_type(), handler)
    dead = Parking(refusals=2)
    line = [(record(0), first), (record(1), broken), (record(2), last)]

    await provisioning.run_line(line, cast(CarrierDeps, None), cast(DeadLetters, dead))

    assert handled == [first.id, last.id]  # in order; the outage retried, not parked
    assert dead.parked == [(broken.id, "'a bug'")]  # parked once the broker took it


def test_outages_are_told_from_bad_data() -> None:
    from asyncpg.exceptions._base import DataError as ClientDataError

    assert is_outage(asyncpg.CannotConnectNowError())  # a server starting up
    assert is_outage(asyncpg.AdminShutdownError())  # a server shutting down
    assert is_outage(ConnectionResetError())
    assert is_outage(BrokerUnavailable("x"))
    assert not is_outage(ClientDataError("value out of int64 range"))
    assert not is_outage(asyncpg.UniqueViolationError())
    assert not is_outage(KeyError("bug"))
