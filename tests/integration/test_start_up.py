"""Starting a process: consumer groups join side by side, "ready" means every group joined, and
the console at INFO says what happened without a line per message.

The embedded broker holds every group join for a rebalance delay; joined one after the other,
a process with ten groups took ~40 s to be ready. How long it takes is measured by
``bench/bench_start.py``; these tests check the order of things, not durations.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from faststream import AckPolicy
from faststream.kafka import KafkaRouter

from events.sms import SmsReceived
from infra.bus import Bus
from infra.kafka import build_broker
from infra.logging import configure
from infra.settings import Settings
from simfleet.app import prepare, running
from simfleet.endpoints import Endpoints
from tests.support.stack import components

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 4, 12, tzinfo=UTC)


def sms(i: int) -> SmsReceived:
    return SmsReceived.create(
        producer="simfleet/test",
        time=T0,
        gateway_id="gw-1",
        port=f"{i % 8 + 1}.01",
        sender="+15551230000",
        to=f"+1555987{i % 50:04d}",
        body=f"message {i}",
        received_at=T0 + timedelta(seconds=i),
    )


async def test_consumer_groups_join_side_by_side(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> None:
    router = KafkaRouter()
    topic = f"{settings.kafka.topic_prefix}sms.inbound"
    for group in ("first", "second", "third"):

        @router.subscriber(
            topic,
            group_id=f"{settings.kafka.topic_prefix}{group}",
            ack_policy=AckPolicy.ACK,
            session_timeout_ms=settings.kafka.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka.kafka_heartbeat_interval_ms,
        )
        async def handle(_body: bytes) -> None:
            return None

    broker = build_broker(settings.kafka, kafka_bootstrap)
    broker.include_router(router)
    began: list[float] = []
    ended: list[float] = []
    loop = asyncio.get_running_loop()
    for sub in broker.subscribers:
        start = sub.start

        async def timed(start=start) -> None:  # type: ignore[no-untyped-def]
            began.append(loop.time())
            await start()
            ended.append(loop.time())

        sub.start = timed  # type: ignore[method-assign]
    await broker.start()
    try:
        assert len(ended) == 3
        assert max(began) < min(ended), "a group began joining only after another had joined"
    finally:
        await broker.stop()


@pytest.mark.timeout(120)
async def test_ready_means_every_group_joined_and_the_console_has_no_line_per_message(
    settings: Settings,
    kafka_bootstrap: str,
    database_url: str,
    topics: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings = settings.model_copy(update={"summary_interval_s": 0.5})
    parts = components("projector", "workers")
    endpoints = Endpoints(kafka_bootstrap, database_url)
    await prepare(settings, endpoints)
    before = structlog.get_config()
    configure("console", "INFO")
    announced: list[str] = []
    try:
        async with running(settings, endpoints, parts, announce=announced.append) as rt:
            assert rt.joining, "nothing was waited for"
            assert all(j.done() for j in rt.joining)
            bus = Bus(rt.broker, settings.kafka.topic_prefix)
            await bus.emit_many(sms(i) for i in range(20))

            async def stored() -> int:
                return int(await rt.pool.fetchval("SELECT count(*) FROM inbound_sms"))

            async with asyncio.timeout(30):
                while await stored() < 20:  # noqa: ASYNC110 (the projector's write)
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1.2)  # two summary intervals
    finally:
        structlog.configure(**before)
    _out, err = capfd.readouterr()
    logging.getLogger(__name__).debug(err)
    assert announced[0].startswith("starting projector, ")
    assert announced[-1].startswith("ready in "), announced
    for noise in ("Received", "Processed", "waiting for messages", "callback for Task"):
        assert noise not in err, f"{noise!r} on the console at INFO:\n{err[-3000:]}"
    assert "summary" in err, err[-3000:]
    assert "events_handled" in err, err[-3000:]
    for line in announced:
        name, _, rest = line.partition(": ")
        assert not rest.startswith(name), f"doubled prefix: {line!r}"
