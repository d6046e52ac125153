"""Inbound silence on a real broker and Postgres: SMS pushed by the sandbox gateways through the
bridge feed the silence consumer; schedulers on fixed clocks hours ahead sweep for silent SIMs;
the sims projection shows them and the read queries count them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from consumers import silence
from events.sim import SimInboundResumed, SimInboundSilent
from infra.settings import Settings, SilenceSettings
from projections import overview_queries, sim_list_queries
from sandbox.skyline import SandboxGateway
from tests.support.clock import ControlledClock
from tests.support.eventually import eventually
from tests.support.number_world import GATEWAY_SECRET, NumberWorld, Sim, running_numbers

pytestmark = pytest.mark.integration

Numbers = Callable[..., contextlib.AbstractAsyncContextManager[NumberWorld]]
HOUR = timedelta(hours=1)


@pytest.fixture
def numbers(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> Numbers:
    def start(**options: Any) -> contextlib.AbstractAsyncContextManager[NumberWorld]:
        quick = SilenceSettings(reseller_after_s={"quick": 3600.0})
        configured = settings.model_copy(update={"silence": quick})
        return running_numbers(
            configured, kafka_bootstrap, database_url, flows=(silence,), **options
        )

    return start


async def silent_since(w: NumberWorld, sim: Sim) -> Any:
    return await w.pool.fetchval(
        "SELECT inbound_silent_since FROM sims WHERE iccid = $1", sim.iccid
    )


async def seated_fleet(w: NumberWorld) -> tuple[Sim, Sim, Sim, datetime]:
    """A SIM of no reseller and one of reseller ``quick`` (1 h threshold), both online, their
    numbers verified at the returned moment; a never-online SIM and an online one in no
    reported port."""
    plain, quick = await w.add_sim(8001), await w.add_sim(8002)
    never = await w.add_sim(8003, verified=False)
    unseated = await w.add_sim(8004)
    w.network.ports.remove_sim(unseated.iccid)
    await w.pool.execute("UPDATE sims SET reseller_id = 'quick' WHERE iccid = $1", quick.iccid)
    await w.network.push_status()
    await eventually(
        lambda: w.pool.fetchval("SELECT count(*) FROM gateway_ports WHERE status_code = 3"),
        until=lambda n: n == 3,
    )
    now = w.clock.now()
    await w.pool.execute(
        "UPDATE sim_numbers SET verified_at = $1 WHERE verified_at IS NOT NULL", now
    )
    return plain, quick, never, now


async def test_an_online_sim_without_sms_for_its_threshold_is_announced_once(
    numbers: Numbers,
) -> None:
    async with numbers() as w:
        plain, quick, never, now = await seated_fleet(w)

        # five minutes on: nobody has been quiet long enough
        soon = await w.scheduler(ControlledClock(now + timedelta(minutes=5)))
        assert await soon.find_silent_sims() == 0

        # an hour on: the reseller with a one-hour threshold has a silent SIM
        later = await w.scheduler(ControlledClock(now + HOUR))
        assert await later.find_silent_sims() == 1
        (first,) = await w.wait_for(SimInboundSilent)
        assert (first.data.iccid, first.data.reseller_id) == (quick.iccid, "quick")
        assert (first.data.threshold_s, first.data.number) == (3600.0, quick.number)
        assert first.data.silent_since == now

        # six hours on: the default threshold; two schedulers at once announce it once
        one, two = [await w.scheduler(ControlledClock(now + 6 * HOUR)) for _ in range(2)]
        rounds = await asyncio.gather(*(s.find_silent_sims() for s in (one, two, one, two)))
        assert sum(rounds) == 1
        announced = await w.wait_for(SimInboundSilent, until=lambda es: len(es) == 2)
        assert {e.data.iccid for e in announced} == {plain.iccid, quick.iccid}
        far = await w.scheduler(ControlledClock(now + 240 * HOUR))
        assert await far.find_silent_sims() == 0  # once per silence; never-online SIMs never
        assert never.iccid not in {e.data.iccid for e in await w.events(SimInboundSilent)}

        # the read side: the sims projection, the count alerts use, the filter, the overview
        await eventually(lambda: overview_queries.silent_sim_count(w.pool), until=lambda n: n == 2)
        page = await sim_list_queries.sim_page(w.pool, silent=True)
        assert {r.iccid for r in page.rows} == {plain.iccid, quick.iccid}
        assert {r.inbound_silent_since for r in page.rows} == {now}
        assert (await overview_queries.overview(w.pool, now)).silent == 2
        assert await w.dead_letters() == 0


async def test_the_next_sms_ends_a_silence_and_the_quiet_starts_again_from_it(
    numbers: Numbers,
) -> None:
    async with numbers() as w:
        plain, quick, _never, now = await seated_fleet(w)
        silent = await w.scheduler(ControlledClock(now + 6 * HOUR))
        assert await silent.find_silent_sims() == 2
        announced = {e.data.iccid: e for e in await w.wait_for(SimInboundSilent)}
        await eventually(lambda: overview_queries.silent_sim_count(w.pool), until=lambda n: n == 2)

        # an SMS to the plain SIM's number (the gateway names no ICCID) ends its silence
        async with SandboxGateway(w.bridge_url, plain.gateway_id, GATEWAY_SECRET) as gateway:
            await gateway.push_sms(plain.port, "+15550002222", plain.number, "hello again")
        (resumed,) = await w.wait_for(SimInboundResumed)
        assert resumed.data.iccid == plain.iccid
        assert resumed.data.silent_event_id == announced[plain.iccid].id
        assert resumed.data.silent_since == now
        await eventually(lambda: silent_since(w, plain), until=lambda t: t is None)
        assert await overview_queries.silent_sim_count(w.pool) == 1

        # more SMS resume nothing more; the quiet is measured from the last SMS
        await w.reply(plain, "and again")
        await w.reply(quick, "hello quick")  # the gateway names the ICCID this time
        both = await w.wait_for(SimInboundResumed, until=lambda es: len(es) == 2)
        assert sorted(e.data.iccid for e in both) == sorted((plain.iccid, quick.iccid))
        await eventually(lambda: overview_queries.silent_sim_count(w.pool), until=lambda n: n == 0)
        assert await silent.find_silent_sims() == 1  # quick's 1 h has passed by then, not 6 h
        again = await w.scheduler(ControlledClock(w.clock.now() + 6 * HOUR + timedelta(minutes=1)))
        assert await again.find_silent_sims() == 1
        every = await w.wait_for(SimInboundSilent, until=lambda es: len(es) == 4)
        assert len({e.id for e in every}) == 4  # a new silence, a new id
        assert len(await w.events(SimInboundResumed)) == 2
        assert await w.dead_letters() == 0
