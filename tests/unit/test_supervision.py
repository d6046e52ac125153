"""Background loops never fail silently: a failure is logged and stops the process."""

import asyncio
from datetime import datetime, timedelta
from typing import Any, cast

import structlog

from consumers.webhooks.attempts import Attempts
from consumers.webhooks.claims import Claims
from consumers.webhooks.dispatch import Dispatcher
from infra.clock import SystemClock
from infra.settings import WebhookSettings
from infra.supervision import supervised


async def _forever() -> None:
    await asyncio.Event().wait()


async def _fails_soon() -> None:
    await asyncio.sleep(0.01)
    raise RuntimeError("loop broke")


async def test_a_failing_loop_is_logged_and_stops_the_process() -> None:
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        async with supervised("part", stop, _forever(), _fails_soon()):
            await asyncio.wait_for(stop.wait(), 5)
    [entry] = [e for e in logs if e["event"] == "component_stopped_unexpectedly"]
    assert entry["component"] == "part"
    assert "loop broke" in entry["error"]


async def test_a_loop_returning_while_the_block_runs_stops_the_process() -> None:
    stop = asyncio.Event()
    async with supervised("part", stop, asyncio.sleep(0)):
        await asyncio.wait_for(stop.wait(), 5)


async def test_a_loop_may_return_once_its_owner_is_finishing() -> None:
    stop, finishing = asyncio.Event(), asyncio.Event()

    async def until_finishing() -> None:
        await finishing.wait()

    async with supervised("part", stop, until_finishing(), finishing=finishing):
        finishing.set()
        await asyncio.sleep(0.05)
    assert not stop.is_set()


async def test_a_failure_while_stopping_is_logged_not_discarded() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("cleanup broke")

    with structlog.testing.capture_logs() as logs:
        async with supervised("part", asyncio.Event(), fails_on_cancel()):
            await asyncio.sleep(0.01)
    assert any(
        e["event"] == "component_failed_while_stopping" and "cleanup broke" in e["error"]
        for e in logs
    )


class _BrokenClaims:
    """A claims table whose sweep fails with a bug, not an outage."""

    async def sweep(self, *_args: Any) -> list[Any]:
        raise ValueError("sweep query broken")


class _IdleAttempts:
    def lease_from(self, now: datetime) -> datetime:
        return now + timedelta(seconds=30)

    async def record_delivered(self) -> None:
        await asyncio.Event().wait()

    async def all_recorded(self) -> None:
        return None


async def test_a_failing_webhook_sweeper_stops_the_process() -> None:
    settings = WebhookSettings(sweep_interval_s=0.01)
    dispatcher = Dispatcher(
        settings,
        claims=cast(Claims, _BrokenClaims()),
        attempts=cast(Attempts, _IdleAttempts()),
        clock=SystemClock(),
    )
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        async with dispatcher.running(stop):
            await asyncio.wait_for(stop.wait(), 5)
    assert any("sweep query broken" in str(e.get("error")) for e in logs), logs
