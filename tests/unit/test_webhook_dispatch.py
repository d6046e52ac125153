"""The dispatcher's admission and the delivery recorder, over stand-ins for Postgres, Kafka and
the receiver: a task starts only when its endpoint has a free slot, and what was delivered is
recorded even when the dispatcher stops right after it."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any, cast

from consumers.webhooks.attempts import Attempts
from consumers.webhooks.claims import Claims, Job
from consumers.webhooks.dispatch import Dispatcher
from consumers.webhooks.rules import Action, Step
from consumers.webhooks.targets import Endpoint, EndpointDirectory
from infra.clock import SystemClock
from infra.kafka import Bus, EncodedEvent
from infra.settings import WebhookSettings
from infra.webhook_sender import AttemptResult, EndpointTarget, Outcome, WebhookSender

T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)


def job(n: int, endpoint_id: str) -> Job:
    return Job(
        message_id=f"sms.received_{n:08x}", endpoint_id=endpoint_id, reseller_id="acme",
        event_type="sms.received", correlationid="corr", body="{}", sequence=1, attempt=1,
        tries=1, started_at=T0,
    )  # fmt: skip


class _Claims:
    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.released: list[str] = []

    async def finish_delivered(self, done: list[tuple[Job, datetime]]) -> None:
        self.delivered += [j.message_id for j, _ in done]

    async def release(self, jobs: list[Job], _now: datetime) -> None:
        self.released += [j.message_id for j in jobs]


class _HeldAttempts:
    """Attempts that last until ``go`` is set, counting how many run at once per endpoint."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.running: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.made: list[str] = []

    def lease_from(self, now: datetime) -> datetime:
        return now

    async def record_delivered(self) -> None:
        await asyncio.Event().wait()

    async def flush(self) -> None:
        return None

    async def make(self, job: Job) -> Step:
        self.running[job.endpoint_id] += 1
        self.most[job.endpoint_id] = max(self.most[job.endpoint_id], self.running[job.endpoint_id])
        await self.go.wait()
        self.running[job.endpoint_id] -= 1
        self.made.append(job.message_id)
        return Step(Action.DONE)


async def test_a_delivery_task_starts_only_when_its_endpoint_has_a_free_slot() -> None:
    settings = WebhookSettings(per_endpoint_concurrency=2)
    attempts, claims = _HeldAttempts(), _Claims()
    dispatcher = Dispatcher(
        settings,
        claims=cast(Claims, claims),
        attempts=cast(Attempts, attempts),
        clock=SystemClock(),
    )
    async with dispatcher.running(asyncio.Event()):
        await dispatcher.submit([job(n, "busy") for n in range(10)] + [job(99, "quiet")])
        await asyncio.sleep(0.05)
        # the busy endpoint's surplus waits as jobs; the other endpoint is not held up
        assert attempts.running == {"busy": 2, "quiet": 1}
        attempts.go.set()  # and the queued ones start as slots free, within the drain
    assert attempts.most == {"busy": 2, "quiet": 1}
    assert len(set(attempts.made)) == 11
    assert claims.released == []


class _Directory:
    def cached(self, endpoint_id: str) -> Endpoint:
        return Endpoint(EndpointTarget(endpoint_id, "https://example.com/hook", ("s",)), True)


class _Sender:
    async def deliver(self, *_args: Any) -> AttemptResult:
        return AttemptResult(Outcome.DELIVERED, 200, 1.0, answer="ok")


class _Bus:
    def __init__(self) -> None:
        self.records: list[EncodedEvent] = []

    async def emit_encoded(self, records: list[EncodedEvent]) -> None:
        self.records += records


async def test_deliveries_made_as_the_dispatcher_stops_are_recorded() -> None:
    settings = WebhookSettings()
    claims, bus = _Claims(), _Bus()
    attempts = Attempts(
        settings,
        claims=cast(Claims, claims),
        directory=cast(EndpointDirectory, _Directory()),
        sender=cast(WebhookSender, _Sender()),
        bus=cast(Bus, bus),
        clock=SystemClock(),
    )
    dispatcher = Dispatcher(
        settings, claims=cast(Claims, claims), attempts=attempts, clock=SystemClock()
    )
    jobs = [job(n, "acme-main") for n in range(5)]
    async with dispatcher.running(asyncio.Event()):
        await dispatcher.submit(jobs)  # and stopped at once: the POSTs end in the drain
    assert sorted(claims.delivered) == sorted(j.message_id for j in jobs)
    assert len(bus.records) == len(jobs)
