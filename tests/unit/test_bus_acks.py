"""Callers of one produce round share its acknowledgement: one caller's deadline must not cancel
it for the others (a push answered 500 where it should have been 200 or 503)."""

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from infra.bus import BrokerUnavailable, Bus
from infra.kafka import build_broker
from infra.settings import KafkaSettings


async def test_one_callers_deadline_does_not_cancel_the_round_it_shares() -> None:
    bus = Bus(build_broker(KafkaSettings(), "127.0.0.1:9"), timeout_s=0.1)
    shared: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def same_round(items: Sequence[Any], _producer: Any) -> list[Any]:
        return [shared for _ in items]

    early = asyncio.create_task(bus._acknowledged(same_round, ["a"]))
    await asyncio.sleep(0.06)
    late = asyncio.create_task(bus._acknowledged(same_round, ["b"]))
    with pytest.raises(BrokerUnavailable):
        await early  # its deadline passed first
    shared.set_result(None)  # the round is acknowledged before the later caller's deadline
    await late
    assert not shared.cancelled()
