"""Concurrent callers' items go to one call; each caller gets its own result or error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from infra.coalescing import Coalesced


class Squares:
    """A ``run_many`` that remembers its calls; the item ``bad`` fails any call holding it."""

    def __init__(self, bad: int | None = None, outage: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.bad, self.outage = bad, outage

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.calls.append(list(items))
        await asyncio.sleep(0)
        if self.bad in items:
            raise (ConnectionRefusedError("postgres away") if self.outage else ValueError("bad"))
        return [i * i for i in items]


async def test_callers_of_the_same_moment_share_one_call() -> None:
    run = Squares()
    coalesced = Coalesced(run)

    results = await asyncio.gather(*(coalesced(i) for i in range(5)))

    assert results == [0, 1, 4, 9, 16]
    assert run.calls == [[0, 1, 2, 3, 4]]


async def test_items_arriving_during_a_call_go_in_the_next_one() -> None:
    gate = asyncio.Event()
    calls: list[list[int]] = []

    async def slow(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        await gate.wait()
        return list(items)

    coalesced = Coalesced(slow)
    first = asyncio.create_task(coalesced(1))
    await asyncio.sleep(0.01)  # the first call is in flight
    later = [asyncio.create_task(coalesced(i)) for i in (2, 3)]
    await asyncio.sleep(0.01)
    gate.set()

    assert [await first, *[await t for t in later]] == [1, 2, 3]
    assert calls == [[1], [2, 3]]


async def test_a_bad_item_fails_only_its_caller() -> None:
    run = Squares(bad=3)
    coalesced = Coalesced(run)

    results = await asyncio.gather(*(coalesced(i) for i in range(5)), return_exceptions=True)

    assert results[:3] == [0, 1, 4]
    assert results[4] == 16
    assert isinstance(results[3], ValueError)
    assert run.calls[0] == [0, 1, 2, 3, 4]  # tried together first, then one by one


async def test_an_outage_fails_every_caller_at_once_to_be_waited_out() -> None:
    run = Squares(bad=0, outage=True)
    coalesced = Coalesced(run)

    results = await asyncio.gather(*(coalesced(i) for i in range(3)), return_exceptions=True)

    assert all(isinstance(r, ConnectionRefusedError) for r in results)
    assert run.calls == [[0, 1, 2]]  # not retried item by item against a server that is away


async def test_calls_are_capped() -> None:
    run = Squares()
    coalesced = Coalesced(run, max_items=2)

    assert await asyncio.gather(*(coalesced(i) for i in range(5))) == [0, 1, 4, 9, 16]
    assert run.calls == [[0, 1], [2, 3], [4]]


async def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    run = Squares()
    coalesced = Coalesced(run)
    gone = asyncio.create_task(coalesced(7))
    kept = asyncio.create_task(coalesced(8))
    await asyncio.sleep(0)
    gone.cancel()

    assert await kept == 64
    with pytest.raises(asyncio.CancelledError):
        await gone
