"""simfleet's services run on uvloop (``infra.event_loop.run``), as the CLI starts them."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from infra import event_loop


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_a_service_runs_on_uvloop_and_its_loop_is_closed_after() -> None:
    loop = event_loop.run(_running_loop())
    assert isinstance(loop, uvloop.Loop)
    assert loop.is_closed()


def test_the_coroutine_s_result_and_errors_come_back_as_from_asyncio_run() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fails() -> None:
        raise LookupError("nothing there")

    assert event_loop.run(answer()) == 42
    with pytest.raises(LookupError, match="nothing there"):
        event_loop.run(fails())
