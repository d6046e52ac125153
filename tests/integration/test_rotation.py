"""Daily rotation end to end: schedulers → mdn.change_requested → the Helix sandbox's MDN change
→ mdn.changed + number.assigned → verification through the sandbox gateways and the bridge.

The schedulers run on a fixed clock at tomorrow 05:31 UTC, when every SIM's slot (05:00 plus
its spread offset, under 30 minutes) has come; the consumers run on the real clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from events.sim import (
    MdnChanged,
    MdnChangeFailed,
    MdnChangeRequested,
    NumberAssigned,
    NumberOnline,
)
from infra.settings import Settings
from policies.rotation import retry_ref
from tests.support.clock import ControlledClock
from tests.support.eventually import eventually
from tests.support.number_world import NumberWorld, at_utc, rotation_settings, running_numbers

pytestmark = pytest.mark.integration

Numbers = Callable[..., contextlib.AbstractAsyncContextManager[NumberWorld]]
TOMORROW_0531 = ControlledClock(at_utc(1, 5, 31))
DAY_REF = f"rotation:{TOMORROW_0531.now().date().isoformat()}"


@pytest.fixture
def numbers(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> Numbers:
    def start(**options: Any) -> contextlib.AbstractAsyncContextManager[NumberWorld]:
        config = rotation_settings(spread_s=1800, min_number_age_s=3600, retry_delay_s=1)
        return running_numbers(settings, kafka_bootstrap, database_url, rotation_config=config)

    return start


async def test_fifty_sims_rotated_by_two_schedulers_get_fifty_new_verified_numbers_once_each(
    numbers: Numbers,
) -> None:
    async with numbers() as w:
        sims = [await w.add_sim(7600 + i) for i in range(50)]
        one, two = await w.scheduler(TOMORROW_0531), await w.scheduler(TOMORROW_0531)

        rounds = await asyncio.gather(*(s.request_rotations() for s in (one, two, one, two)))
        assert sum(rounds) == 50
        online = await w.wait_for(
            NumberOnline, until=lambda es: len({e.data.iccid for e in es}) == 50, within=45
        )

        requests = await w.events(MdnChangeRequested)
        assert len(requests) == 50  # records on the topic, not only distinct ids
        assert {r.data.ref for r in requests} == {DAY_REF}
        assert Counter(r.data.iccid for r in requests) == Counter(s.iccid for s in sims)
        assert w.carrier.calls["mdn_change"] == 50
        new_numbers = {}
        for sim in sims:
            line = w.carrier.subscriber_by_iccid(sim.iccid)
            assert line is not None
            assert line.old_phone_number == sim.number[2:] != line.phone_number
            new_numbers[sim.iccid] = f"+1{line.phone_number}"
        assert {e.data.iccid: e.data.number for e in online} == new_numbers
        assigned = await w.events(NumberAssigned)
        before = {s.iccid: s.number for s in sims}
        assert {e.data.iccid: (e.data.source, e.data.previous_number) for e in assigned} == {
            iccid: ("rotation", number) for iccid, number in before.items()
        }
        changed = await w.events(MdnChanged)
        assert {e.data.iccid: e.data.new_number for e in changed} == new_numbers
        await eventually(
            lambda: w.pool.fetch("SELECT iccid, current_number, number_status FROM sims"),
            until=lambda rows: (
                {r["iccid"]: (r["current_number"], r["number_status"]) for r in rows}
                == {i: (n, "verified") for i, n in new_numbers.items()}
            ),
        )
        assert sorted(s.to for s in w.network.sent) == sorted(new_numbers.values())
        assert {s.fate for s in w.network.sent} == {"delivered"}

        # the day is done: later ticks ask nothing, another request for the day is refused,
        # a redelivered request only re-emits what it emitted
        assert await one.request_rotations() == 0
        first = next(r for r in requests if r.data.iccid == sims[0].iccid)
        second_try = MdnChangeRequested.create(
            producer="simfleet/test", time=w.clock.now(), iccid=sims[0].iccid,
            ref=retry_ref(DAY_REF, 2),
        )  # fmt: skip
        await w.emit(second_try, first)
        await w.wait_for(MdnChanged, until=lambda es: len(es) == 51)
        assert w.carrier.calls["mdn_change"] == 50
        assert len({e.id for e in await w.events(MdnChanged)}) == 50
        assert len(await w.events(NumberOnline)) == 50
        assert await w.dead_letters() == 0


async def test_a_failed_rotation_is_retried_when_its_time_comes(numbers: Numbers) -> None:
    async with numbers() as w:
        fine, stuck = await w.add_sim(7701), await w.add_sim(7702)
        w.carrier.reject_next_mdn_change(stuck.iccid, "Subscriber has a pending order")
        scheduler = await w.scheduler(TOMORROW_0531)
        assert await scheduler.request_rotations() == 2

        (failed,) = await w.wait_for(MdnChangeFailed)
        assert (failed.data.iccid, failed.data.retryable) == (stuck.iccid, False)
        assert "pending order" in failed.data.reason
        row = await eventually(
            lambda: w.pool.fetchrow("SELECT * FROM rotations WHERE iccid = $1", stuck.iccid),
            until=lambda r: r["next_retry_at"] is not None,
        )
        assert (row["state"], row["attempts"], row["rotation_key"]) == ("failed", 1, DAY_REF)

        assert await scheduler.request_rotations() == 1  # the retry, due on the fixed clock
        changed = await w.wait_for(MdnChanged, until=lambda es: len(es) == 2)
        assert {e.data.iccid for e in changed} == {fine.iccid, stuck.iccid}
        refs = {r.data.ref for r in await w.events(MdnChangeRequested)}
        assert refs == {DAY_REF, retry_ref(DAY_REF, 2)}
        await w.wait_for(NumberOnline, until=lambda es: len(es) == 2)
        row = await w.pool.fetchrow("SELECT * FROM rotations WHERE iccid = $1", stuck.iccid)
        assert (row["state"], row["attempts"]) == ("changed", 2)
        assert await scheduler.request_rotations() == 0


async def test_an_operator_rotation_is_its_own_key(numbers: Numbers) -> None:
    async with numbers() as w:
        sim, _other = await w.add_sim(7801), await w.add_sim(7802)
        rotate_now = MdnChangeRequested.create(
            producer="simfleet/commands", time=w.clock.now(), iccid=sim.iccid, ref="op-rotate-1"
        )
        await w.emit(rotate_now)
        (changed,) = await w.wait_for(MdnChanged)
        assert changed.data.old_number == sim.number
        (online,) = await w.wait_for(NumberOnline)
        assert online.data.number == changed.data.new_number
        # the day's rotation still happens: one change per key, not one per day
        assert await (await w.scheduler(TOMORROW_0531)).request_rotations() == 2
        await w.wait_for(MdnChanged, until=lambda es: len(es) == 3)
        assert w.carrier.calls["mdn_change"] == 3
