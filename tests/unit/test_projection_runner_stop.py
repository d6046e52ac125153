"""A projection runner cancelled while its consumer is still starting (a projector stopped
right after it began, a test's block ending early) stops that consumer: left running it would
keep its connections to the broker and, once joined, its place in the group."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from infra.dead_letters import DeadLetters
from infra.settings import KafkaSettings
from projections.runner import ProjectionRunner
from projections.sms import InboundSmsProjection


@pytest.fixture
async def silent_broker() -> AsyncIterator[str]:
    """A listening port that takes connections and never answers: a start waits on it."""
    connections: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_runner_cancelled_while_starting_stops_its_consumer(silent_broker: str) -> None:
    runner = ProjectionRunner(
        InboundSmsProjection(),
        bootstrap=silent_broker,
        kafka=KafkaSettings(),
        pool=cast(Any, None),  # never reached: the start does not end
        dead_letters=DeadLetters(cast(Any, None), "projection.inbound_sms"),
    )
    consumer = runner._consumer
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.3)  # connected, waiting for the broker's metadata
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert consumer._closed is True
