"""The broker restarted while gateways push: 503 meanwhile, nothing acknowledged is lost.

The broker is a Tansu that keeps its data in S3 (``tests.support.durable_broker``), so a restart
is a real one: the process is SIGKILLed mid-stream and started again on the same storage and
port, as a crashed Kafka brought back by its supervisor would be. Gateways keep pushing
throughout; the bridge and the inbound_sms projection run through it and are never restarted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from events.envelope import Event
from events.sms import SmsReceived
from events.topics import SMS_INBOUND
from infra.bus import Bus
from infra.clock import SystemClock
from infra.dead_letters import DeadLetters
from infra.http import serve_http
from infra.kafka import build_broker, ensure_topics
from infra.postgres import create_pool
from infra.settings import SecretsSettings, Settings
from producers.skyline.bridge import RETRY_AFTER_S, create_bridge_app
from projections.runner import ProjectionRunner
from projections.sms import InboundSmsProjection
from tests.conftest import isolated_settings
from tests.support.durable_broker import DurableBroker, S3Server
from tests.support.eventually import eventually
from tests.support.gateway_load import Answer, Gateways, topic_records
from tests.support.positions import projection_reached
from tests.support.projecting import running

pytestmark = pytest.mark.integration

SECRET = "gw-secret-for-restart-tests"
GATEWAYS = 4
ROWS = 3  # SMS per push
PUSHED_BEFORE_KILL = 60  # acknowledged pushes before the broker is killed
REFUSED_WHILE_DOWN = 2 * GATEWAYS  # refused pushes before the broker is started again
PUSHED_AFTER_RESTART = 30


@pytest.fixture
async def durable_kafka(tmp_path: Path) -> AsyncIterator[DurableBroker]:
    s3 = S3Server(tmp_path / "s3.log")
    await asyncio.to_thread(s3.start)
    broker = DurableBroker(s3, tmp_path / "tansu.log")
    try:
        await broker.start()
        yield broker
    finally:
        broker.kill()
        s3.stop()


@pytest.fixture
async def restart_settings(
    durable_kafka: DurableBroker, database_url: str, topic_prefix: str
) -> Settings:
    settings = isolated_settings(durable_kafka.bootstrap, database_url, topic_prefix)
    # Tansu refuses InitProducerId: the idempotent producer is Apache Kafka's
    kafka = settings.kafka.model_copy(update={"kafka_idempotence": False})
    await ensure_topics(durable_kafka.bootstrap, kafka)
    return settings.model_copy(
        update={"kafka": kafka, "secrets": SecretsSettings(gateway_secret=SecretStr(SECRET))}
    )


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def rows(pool: asyncpg.Pool) -> tuple[int, set[str]]:
    records = await pool.fetch("SELECT message_id FROM inbound_sms")
    return len(records), {str(r["message_id"]) for r in records}


async def rows_once_projected(
    pool: asyncpg.Pool, topic: str, on_topic: list[tuple[int, int, Event]]
) -> tuple[int, set[str]]:
    """inbound_sms once the projection has read every record ``on_topic`` (all of the topic's,
    read with their positions): a late duplicate row would be there by then. Not
    ``end_offsets()``: Tansu answers it with the base offset of a partition's last batch + 1,
    not with the high watermark."""
    ends: dict[int, int] = {}
    for partition, offset, _ in on_topic:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    await projection_reached(pool, "inbound_sms", topic, ends, within=60)
    return await rows(pool)


async def reached(gateways: Gateways, status: int, since: float, at_least: int) -> None:
    await gateways.until(lambda: gateways.answered(status, since) >= at_least, within=60)


def during(answers: list[Answer], start: float, end: float) -> list[Answer]:
    return [a for a in answers if a.sent_at >= start and a.answered_at < end]


async def test_broker_restarted_while_gateways_push_503_meanwhile_and_nothing_acknowledged_lost(
    restart_settings: Settings, durable_kafka: DurableBroker, pool: asyncpg.Pool
) -> None:
    settings, kafka = restart_settings, durable_kafka
    marks: dict[str, float] = {}

    def mark(name: str) -> float:
        marks[name] = time.monotonic()
        return marks[name]

    broker = build_broker(settings.kafka, kafka.bootstrap)
    async with broker, httpx.AsyncClient(timeout=30) as http:
        bus = Bus(broker, settings.kafka.topic_prefix, timeout_s=2.0)
        runner = ProjectionRunner(
            InboundSmsProjection(),
            bootstrap=kafka.bootstrap,
            kafka=settings.kafka,
            pool=pool,
            dead_letters=DeadLetters(bus, "inbound_sms"),
            retry_delay_s=0.25,
        )
        app = create_bridge_app(settings, bus, SystemClock())
        async with serve_http(app) as url, running(runner) as projecting:
            gateways = Gateways(http, url, SECRET, GATEWAYS, ROWS)
            gateways.start()
            await reached(gateways, 200, mark("start"), PUSHED_BEFORE_KILL)
            # the projection is reading too, so it has to live through the restart
            await eventually(lambda: rows(pool), until=lambda r: r[0] > 0, within=30)
            mark("kill")
            kafka.kill()  # while pushes are in flight
            await reached(gateways, 503, mark("down"), REFUSED_WHILE_DOWN)
            mark("restart")
            await kafka.start()  # same storage, same port
            await reached(gateways, 200, mark("up"), PUSHED_AFTER_RESTART)
            await gateways.stop()
            retried = await gateways.retry_refused(within=30)

            acknowledged = [a for a in gateways.answers + retried if a.status == 200]
            ids = {i for a in acknowledged for i in a.body["ids"]}
            on_topic = await topic_records(kafka.bootstrap, settings, ids)
            topic = SMS_INBOUND.full_name(settings.kafka.topic_prefix)
            row_count, row_ids = await rows_once_projected(pool, topic, on_topic)
            assert not projecting.done(), "the projection gave up"

    answers = gateways.answers
    # while the broker was down every push was refused with 503 + Retry-After, none accepted
    outage = during(answers, marks["down"], marks["restart"])
    assert len(outage) >= REFUSED_WHILE_DOWN
    assert {(a.status, a.retry_after) for a in outage} == {(503, str(RETRY_AFTER_S))}
    assert {a.body["error"] for a in outage} == {"event store unavailable, retry later"}
    # the pushes in flight at the kill may go either way; nothing else is ever answered
    assert {a.status for a in answers} <= {200, 503}
    assert any(a.sent_at < marks["kill"] < a.answered_at for a in answers), "none in flight"

    # every acknowledged SMS is on the topic; duplicates only as the same event again
    assert {a.push for a in acknowledged} == {a.push for a in answers}  # all accepted at last
    assert len(ids) == ROWS * len(answers)
    bodies = {i: b for a in acknowledged for i, b in zip(a.body["ids"], a.push.bodies, strict=True)}
    events = [event for _, _, event in on_topic]
    on_topic_ids = {e.id for e in events}
    assert len(ids - on_topic_ids) == 0, f"{len(ids - on_topic_ids)} acknowledged SMS lost"
    assert on_topic_ids == ids
    for event in events:
        assert isinstance(event, SmsReceived)
        assert event.data.body == bodies[event.id]

    # the projection, which read through the restart, holds each SMS exactly once
    assert len(ids - row_ids) == 0, f"{len(ids - row_ids)} acknowledged SMS not in inbound_sms"
    assert (row_count, row_ids) == (len(ids), ids)

    print(  # noqa: T201  (this run's figures, shown with pytest -s)
        f"\nbroker restart: {len(answers)} pushes / {len(ids)} SMS; "
        f"{len(outage)} refused while down, restart took {marks['up'] - marks['restart']:.2f} s; "
        f"{len(retried)} refused pushes retried; {len(events)} records on the topic "
        f"({len(events) - len(ids)} duplicates of acknowledged ids)"
    )
