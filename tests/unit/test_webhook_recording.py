"""Deliveries made are recorded in groups, each its claims first and its events second; a group
being written does not hold the next one back (a catch-up's POSTs outran a one-at-a-time
recorder, and the claims fell seconds behind)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

from consumers.webhooks import attempts
from consumers.webhooks.attempts import Attempts, delivered_record
from consumers.webhooks.claims import Claims, Job
from infra.bus import Bus, EncodedEvent
from infra.clock import SystemClock
from infra.settings import WebhookSettings
from infra.webhook_sender import AttemptResult, Outcome
from tests.support.webhook_jobs import job

T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)
UPDATE_S = 0.2  # a slow UPDATE: the next group is taken meanwhile


class SlowClaims:
    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log, self.writing, self.most_at_once = log, 0, 0

    async def finish_delivered(self, done: Sequence[tuple[Job, datetime]]) -> None:
        self.writing += 1
        self.most_at_once = max(self.most_at_once, self.writing)
        await asyncio.sleep(UPDATE_S)
        self.log += [("claim", j.message_id) for j, _ in done]
        self.writing -= 1


class Events:
    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log

    async def emit_encoded(self, records: Sequence[EncodedEvent]) -> None:
        self.log += [("event", r.key.decode()) for r in records]


async def test_groups_are_written_two_at_a_time_claims_before_their_events() -> None:
    log: list[tuple[str, str]] = []
    claims = SlowClaims(log)
    recorder = Attempts(
        WebhookSettings(),
        claims=cast(Claims, claims),
        directory=cast(Any, None),
        sender=cast(Any, None),
        bus=cast(Bus, Events(log)),
        clock=SystemClock(),
    )
    result = AttemptResult(Outcome.DELIVERED, 200, 5.0, None)
    made = [replace(job(), message_id=f"m{i}", endpoint_id=f"m{i}") for i in range(6)]

    running = asyncio.create_task(recorder.record_delivered())
    try:
        for wave in (made[:3], made[3:]):
            for j in wave:
                recorder._recorded(j, T0, delivered_record(j, result, T0, T0))
            await asyncio.sleep(attempts.GROUP_WINDOW_S + 0.05)  # the first group is being written
        async with asyncio.timeout(UPDATE_S * 1.8):  # two groups one after the other: 2x
            await recorder.all_recorded()
    finally:
        running.cancel()

    assert claims.most_at_once == 2
    for j in made:  # the event key is the endpoint id, here the message's own
        assert log.index(("claim", j.message_id)) < log.index(("event", j.message_id))
    assert sorted(log) == sorted(
        [("claim", j.message_id) for j in made] + [("event", j.message_id) for j in made]
    )
