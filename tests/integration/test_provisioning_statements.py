"""The provisioning group's statements for many SIMs at once, on a real Postgres: the effects
ledger begun and recorded for concurrent causes in shared statements keeps "once per cause"
(a cause seen again re-emits its outcome, never acts again), closing retry rows touches only
the rows named, and the finalizer's look at a SIM's line answers each SIM for itself."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import cast

import asyncpg
import pytest

from consumers.carrier_retries import close_many
from consumers.effects import Ledger, once
from consumers.finalizer import held_many
from events.envelope import Event
from events.sim import SimActivated, SimActivationRequested
from infra.bus import Bus
from infra.coalescing import Coalesced
from infra.postgres import create_pool
from sandbox.helix_world import make_iccid, make_imei

pytestmark = pytest.mark.integration
NOW = datetime(2026, 5, 4, 12, tzinfo=UTC)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


class Emitted:
    """The bus as the ledger sees it: what was emitted, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)


def request(n: int) -> SimActivationRequested:
    return SimActivationRequested.create(
        producer="t", time=NOW, iccid=make_iccid(n), imei=make_imei(n), ref=f"sheet:{n}"
    )


def activated(req: SimActivationRequested) -> SimActivated:
    return SimActivated.of(
        req, producer="t", time=NOW, iccid=req.data.iccid, request_id=req.id,
        mobility_subscription_id=str(1000 + int(req.data.iccid[-4:])), imei=req.data.imei,
    )  # fmt: skip


async def test_concurrent_causes_act_once_each_and_redeliveries_re_emit(
    pool: asyncpg.Pool,
) -> None:
    ledger, bus = Ledger(pool, coalesce=True), Emitted()
    requests = [request(n) for n in range(40)]
    acted: list[str] = []

    async def handle(req: SimActivationRequested) -> Event | None:
        async def act(retried: bool) -> Event:
            assert not retried
            acted.append(req.id)
            await asyncio.sleep(0)  # the others begin meanwhile
            return activated(req)

        return await once(ledger, cast(Bus, bus), "activation", req, act)

    first = await asyncio.gather(*(handle(r) for r in requests))
    again = await asyncio.gather(*(handle(r) for r in requests))  # a redelivered batch

    assert sorted(acted) == sorted(r.id for r in requests)  # each cause acted on once
    assert [e.id for e in again if e] == [e.id for e in first if e]  # the stored outcomes
    attempts = await pool.fetch(
        "SELECT attempts, outcome IS NOT NULL AS done FROM consumer_effects "
        "WHERE consumer = 'activation'"
    )
    assert len(attempts) == 40
    assert {(r["attempts"], r["done"]) for r in attempts} == {(2, True)}


async def test_a_cause_begun_twice_at_once_counts_two_deliveries(pool: asyncpg.Pool) -> None:
    ledger = Ledger(pool, coalesce=True)
    begun = await asyncio.gather(
        ledger.begin("finalizer", "e1"), ledger.begin("finalizer", "e1"), ledger.begin("x", "e1")
    )

    assert list(begun) == [(None, 1), (None, 2), (None, 1)]


async def test_the_first_outcome_recorded_wins_also_within_one_statement(
    pool: asyncpg.Pool,
) -> None:
    ledger, req = Ledger(pool, coalesce=True), request(1)
    one, other = activated(req), activated(request(2))

    await asyncio.gather(
        ledger.record("activation", req.id, one), ledger.record("activation", req.id, other)
    )

    stored, _ = await Ledger(pool).begin("activation", req.id)
    assert stored["id"] == one.id


async def test_closing_retry_rows_closes_only_those_named(pool: asyncpg.Pool) -> None:
    for iccid, action in (("a", "activate"), ("a", "cancel"), ("b", "activate")):
        await pool.execute(
            "INSERT INTO carrier_retries (iccid, action, request, request_id, failures, state, "
            "updated_at) VALUES ($1, $2, '{}', 'r', 1, 'waiting', now())",
            iccid,
            action,
        )
    close = Coalesced(functools.partial(close_many, pool))

    await asyncio.gather(close(("a", "activate")), close(("b", "activate")), close(("c", "cancel")))

    left = await pool.fetch("SELECT iccid, action FROM carrier_retries")
    assert [tuple(r) for r in left] == [("a", "cancel")]


async def test_each_sim_gets_its_own_line_and_number(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO sims (iccid, status, mobility_subscription_id, current_number) VALUES "
        "('a', 'active', '11', '+15550000001'), ('b', 'provisioning', '12', NULL)"
    )
    held = Coalesced(functools.partial(held_many, pool))

    answers = await asyncio.gather(held("a"), held("b"), held("missing"), held("a"))

    assert list(answers) == [("11", "+15550000001"), ("12", None), None, ("11", "+15550000001")]
