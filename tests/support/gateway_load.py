"""Gateways pushing SMS through the bridge while a fault test breaks something, and the count
afterwards: what the bridge acknowledged, what it refused, whether all of it was stored.

Each gateway keeps one push in flight at any moment (the next one as soon as the last was
answered), every push a new set of SMS; a refused push is what a gateway retries until the bridge
accepts it (``retry_refused``). Each SMS carries its own time, so the same push always gives the
same ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from events.codec import decode
from events.envelope import Event
from events.topics import SMS_INBOUND
from infra.kafka_address import servers
from infra.settings import Settings
from tests.support.eventually import eventually
from tests.support.positions import projection_caught_up

T0 = 1_763_900_000
SENDER = "+15551230000"


def to_number(gateway: int) -> str:
    """The number of the SIM that receives every SMS of gateway ``gateway``."""
    return f"+1555987{gateway:04d}"


@dataclass(frozen=True)
class Push:
    gateway: int
    number: int
    rows: int

    @property
    def bodies(self) -> list[str]:
        return [f"gw {self.gateway} push {self.number} row {row}" for row in range(self.rows)]

    def payload(self) -> dict[str, Any]:
        rows = [
            [0, f"{row + 1}.01", T0 + self.number, SENDER, to_number(self.gateway), body]
            for row, body in enumerate(self.bodies)
        ]
        return {"type": "recv-sms", "sms_num": len(rows), "sms": rows}


@dataclass(frozen=True)
class Answer:
    push: Push
    status: int  # 0: no answer (the client's time-out, or the connection dropped)
    retry_after: str | None
    body: dict[str, Any]
    sent_at: float
    answered_at: float

    @property
    def ids(self) -> list[str]:
        return list(self.body.get("ids", [])) if self.status == 200 else []


def acknowledged_ids(answers: Iterable[Answer]) -> set[str]:
    return {i for a in answers if a.status == 200 for i in a.ids}


@dataclass
class Gateways:
    """``count`` gateways pushing ``rows`` SMS per push to the bridge at ``url``."""

    http: httpx.AsyncClient
    url: str
    secret: str
    count: int
    rows: int
    pause_s: float = 0.0  # between a gateway's answer and its next push
    answers: list[Answer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def send(self, push: Push) -> Answer:
        sent_at = time.monotonic()
        try:
            response = await self.http.post(f"{self.url}/s/{self.secret}/sms", json=push.payload())
        except httpx.TransportError:  # unanswered: the gateway pushes it again later
            return Answer(push, 0, None, {}, sent_at, time.monotonic())
        body = response.json() if response.content else {}
        retry_after = response.headers.get("retry-after")
        return Answer(push, response.status_code, retry_after, body, sent_at, time.monotonic())

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._push(g)) for g in range(self.count)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _push(self, gateway: int) -> None:
        number = 0
        while not self._stop.is_set():
            self.answers.append(await self.send(Push(gateway, number, self.rows)))
            number += 1  # without a pause each gateway has a push in flight at any moment
            if self.pause_s:
                await asyncio.sleep(self.pause_s)

    def acknowledged(self, since: float = 0.0) -> int:
        return sum(len(a.ids) for a in self.answers if a.status == 200 and a.sent_at >= since)

    def refused(self, since: float) -> list[Answer]:
        """Pushes the bridge answered with an error (not the unanswered ones)."""
        return [a for a in self.answers if a.status not in (0, 200) and a.sent_at >= since]

    def answered(self, status: int, since: float) -> int:
        return sum(1 for a in self.answers if a.status == status and a.sent_at >= since)

    async def until(self, probe: Callable[[], object], within: float = 120.0) -> None:
        async def holds() -> bool:
            return bool(probe())

        await eventually(holds, within=within, interval=0.1)

    async def retry_refused(self, within: float = 60.0) -> list[Answer]:
        """What a gateway does with a refused push: the same SMS again until accepted."""
        retried = []
        for push in [a.push for a in self.answers if a.status != 200]:

            async def resend(push: Push = push) -> Answer:
                return await self.send(push)

            retried.append(await eventually(resend, until=lambda a: a.status == 200, within=within))
        return retried


async def inbound_ids(pool: asyncpg.Pool) -> list[str]:
    return [str(r["message_id"]) for r in await pool.fetch("SELECT message_id FROM inbound_sms")]


async def stored(
    pool: asyncpg.Pool, ids: set[str], within: float, *, bootstrap: str, settings: Settings
) -> list[str]:
    """inbound_sms's message ids once they include ``ids`` (or after ``within``) and the
    projection has read to the end of sms.inbound, so a late duplicate would be among them.
    Call it once nothing more is pushed. The caller asserts on what it returns."""
    with contextlib.suppress(AssertionError):
        await eventually(
            lambda: inbound_ids(pool), until=lambda r: ids <= set(r), within=within, interval=0.5
        )
    kafka = settings.kafka
    await projection_caught_up(pool, bootstrap, kafka, "inbound_sms", SMS_INBOUND, within=within)
    return await inbound_ids(pool)


async def topic_events(
    bootstrap: str, settings: Settings, ids: set[str], within: float = 30.0
) -> list[Event]:
    """Every event on sms.inbound from offset 0, read until all of ``ids`` were seen (or
    ``within`` passed) and then a little longer: a late duplicate would show up there."""
    return [event for _, _, event in await topic_records(bootstrap, settings, ids, within)]


async def topic_records(
    bootstrap: str, settings: Settings, ids: set[str], within: float = 30.0
) -> list[tuple[int, int, Event]]:
    """``topic_events`` with each one's partition and offset."""
    topic = SMS_INBOUND.full_name(settings.kafka.topic_prefix)
    partitions = settings.kafka.partitions_for(SMS_INBOUND.name, SMS_INBOUND.partitions)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=servers(bootstrap), enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[int, int, Event]] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + within
        rounds_after = 5
        while rounds_after > 0:
            batch = await consumer.getmany(timeout_ms=200)
            found += [(r.partition, r.offset, decode(r.value)) for rs in batch.values() for r in rs]
            if ids <= {e.id for _, _, e in found} or time.monotonic() > deadline:
                rounds_after -= 1
    finally:
        await consumer.stop()
    return found
