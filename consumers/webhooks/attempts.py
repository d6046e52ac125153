"""One delivery attempt: sign and POST, then record the outcome — claim row first, events second.

The claim row is the truth for "was it delivered" (the consumer's de-duplication); the events
(``webhook.delivery_succeeded`` | ``webhook.delivery_failed``, ``webhook.retry_scheduled``,
``webhook.endpoint_disabled``) tell everyone else, and feed ``webhook_deliveries``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
import structlog

from consumers.webhooks.claims import Claims, Job
from consumers.webhooks.endpoint_health_rules import ENDPOINT_BLOCKED
from consumers.webhooks.rules import Action, Schedule, Step, after_attempt
from consumers.webhooks.targets import EndpointDirectory
from events.envelope import Event, storable
from events.reseller import WebhookEndpointDisabled
from events.topics import (
    CLOUDEVENTS_JSON,
    HEADER_CORRELATION,
    HEADER_ID,
    HEADER_SOURCE,
    HEADER_SPECVERSION,
    HEADER_SUBJECT,
    HEADER_TIME,
    HEADER_TYPE,
    WEBHOOK_DELIVERIES,
)
from events.webhook import (
    WebhookDeliveryFailed,
    WebhookDeliverySucceeded,
    WebhookRetryScheduled,
)
from infra.bus import BrokerUnavailable, Bus, EncodedEvent
from infra.clock import Clock
from infra.outages import is_outage
from infra.settings import WebhookSettings
from infra.webhook_sender import AttemptResult, Outcome, WebhookSender
from infra.webhook_signing import SecretUnsealError

PRODUCER = "simfleet/webhooks"
EMIT_RETRIES_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# how long a delivery's record waits for others to share its UPDATE and produce request:
# in a catch-up (7,000/s) 20 ms makes groups of ~140 rather than ~35; a crash within it sends
# those deliveries again, as a crash just after the POST always could
GROUP_WINDOW_S = 0.02
RECORDING_GROUPS = 2  # groups being written at once (see record_delivered)
DELIVERY_SUCCEEDED = WebhookDeliverySucceeded.event_type()
# the delivery record's constant header values, encoded once
CONTENT_TYPE = "content-type"
CLOUDEVENTS_JSON_BYTES = CLOUDEVENTS_JSON.encode()
DELIVERY_SUCCEEDED_BYTES = DELIVERY_SUCCEEDED.encode()
PRODUCER_BYTES = PRODUCER.encode()
GONE_REASON = "endpoint answered 410 Gone"
GONE_MEMORY_S = 60.0  # longer than the projector takes to show the endpoint disabled

log = structlog.get_logger("simfleet.webhooks")
T = TypeVar("T")


def delivered_record(
    job: Job, result: AttemptResult, attempted_at: datetime, now: datetime
) -> EncodedEvent:
    """``webhook.delivery_succeeded`` as ``Event.create`` makes it and ``Bus`` writes it, for a
    fraction of the CPU: one per delivery on the hot path. ``create`` validates the payload,
    dumps it back to JSON for the id and walks every field for U+0000; here the id comes from
    the three identity values directly, only the receiver's answer (the one value from outside)
    is made storable, and orjson writes the value in the model's field order, times with a
    ``Z`` as pydantic does. The unit tests hold both ways to the same bytes and headers."""
    event_id = _delivered_id(job)
    correlationid = job.correlationid or event_id
    data = {
        "message_id": job.message_id,
        "endpoint_id": job.endpoint_id,
        "reseller_id": job.reseller_id,
        "event_type": job.event_type,
        "attempt": job.attempt,
        "status_code": result.status_code,
        "latency_ms": result.latency_ms,
        "attempted_at": attempted_at,
        "response": storable(result.answer),
    }
    envelope = {
        "specversion": "1.0", "id": event_id, "type": DELIVERY_SUCCEEDED, "source": PRODUCER,
        "subject": job.endpoint_id, "time": now, "correlationid": correlationid,
        "datacontenttype": "application/json", "dataversion": 1, "data": data,
    }  # fmt: skip
    headers = [  # codec.headers_for's, in its order
        (CONTENT_TYPE, CLOUDEVENTS_JSON_BYTES),
        (HEADER_ID, event_id.encode()),
        (HEADER_TYPE, DELIVERY_SUCCEEDED_BYTES),
        (HEADER_TIME, orjson.dumps(now, option=orjson.OPT_UTC_Z)[1:-1]),
        (HEADER_SOURCE, PRODUCER_BYTES),
        (HEADER_SUBJECT, job.endpoint_id.encode()),
        (HEADER_SPECVERSION, b"1.0"),
        (HEADER_CORRELATION, correlationid.encode()),
    ]
    value = orjson.dumps(envelope, option=orjson.OPT_UTC_Z)
    return EncodedEvent(WEBHOOK_DELIVERIES, job.endpoint_id.encode(), value, headers)


def _delivered_id(job: Job) -> str:
    # canonical_id's JSON (keys sorted, compact, non-ASCII as itself), as orjson writes it
    identity = {
        "attempt": job.attempt,
        "endpoint_id": job.endpoint_id,
        "message_id": job.message_id,
    }
    return f"{DELIVERY_SUCCEEDED}_{hashlib.sha256(orjson.dumps(identity)).hexdigest()}"


class Attempts:
    def __init__(
        self,
        settings: WebhookSettings,
        *,
        claims: Claims,
        directory: EndpointDirectory,
        sender: WebhookSender,
        bus: Bus,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self._schedule = Schedule.from_settings(settings)
        self._claims = claims
        self._directory = directory
        self._sender = sender
        self._bus = bus
        self._clock = clock
        # answered 410 here: stop before the projection says so. Only for a while: the read
        # table takes over, and an endpoint re-enabled through another process must not stay
        # refused here
        self._gone: dict[str, float] = {}
        self._delivered: list[tuple[Job, datetime, EncodedEvent]] = []
        self._delivered_waiting = asyncio.Event()
        self._unrecorded = 0  # delivered, their claim and event not yet written
        self._all_recorded = asyncio.Event()
        self._all_recorded.set()

    def endpoint_enabled(self, endpoint_id: str) -> None:
        """Re-enabled by the operator: read it afresh instead of refusing it from memory."""
        self._gone.pop(endpoint_id, None)
        self._directory.forget(endpoint_id)

    def lease_from(self, now: datetime) -> datetime:
        """Until when an attempt starting ``now`` is ours: the POST's deadline plus a margin."""
        return now + timedelta(seconds=self.settings.timeout_s + self.settings.lease_margin_s)

    async def make(self, job: Job) -> Step:
        attempted_at = self._clock.now()
        # the usual case without a coroutine of its own: every await in the POST below resumes
        # each frame above it
        endpoint = self._directory.cached(job.endpoint_id)
        if endpoint is not None and endpoint.enabled and job.endpoint_id not in self._gone:
            result = await self._sender.deliver(endpoint.target, job.message_id, job.body.encode())
        else:
            result = await self._send(job, attempted_at)
        now = self._clock.now()
        step = after_attempt(
            result.outcome,
            job.tries,
            started_at=job.started_at,
            now=now,
            schedule=self._schedule,
            retry_after_s=result.retry_after_s,
        )
        if step.action is Action.DONE:
            self._recorded(job, now, delivered_record(job, result, attempted_at, now))
        else:
            await self._claim_outcome(job, step, now)
            if step.action is Action.DISABLE:
                self._endpoint_gone(job.endpoint_id)
            await self._emit(self._failure_facts(job, result, step, attempted_at, now))
        return step

    def _recorded(self, job: Job, now: datetime, record: EncodedEvent) -> None:
        """Queued for ``record_delivered``'s next group. The attempt does not wait for it: the
        POST is made either way, and waiting held each delivery (its task, a future, its place
        in the endpoint's line) until the group was written — 10-15 % of the consumer's CPU
        per delivery in catch-up. Until written, the claim is pending under its lease: after a
        crash the sweeper sends it again, as after a crash just after the POST."""
        self._delivered.append((job, now, record))
        self._unrecorded += 1
        self._all_recorded.clear()
        self._delivered_waiting.set()

    async def all_recorded(self) -> None:
        """Returns once every delivery made so far has its claim and event written (or its
        group failed, leaving the claims to the sweeper): before the recorder is stopped."""
        await self._all_recorded.wait()

    async def record_delivered(self) -> None:
        """Marks delivered claims and publishes their events in groups: one UPDATE and one
        Kafka round per group instead of one each per POST (the 2,000/s path). Up to
        ``RECORDING_GROUPS`` groups at once, each its claims first and its events second: one at
        a time, a catch-up's groups (~500 deliveries: a 20 ms UPDATE, a 15 ms produce) were
        written slower than the POSTs were made, and the claims fell seconds behind. Runs for
        the dispatcher's lifetime."""
        slots = asyncio.Semaphore(RECORDING_GROUPS)
        async with asyncio.TaskGroup() as groups:
            while True:
                await self._delivered_waiting.wait()
                await asyncio.sleep(GROUP_WINDOW_S)
                await slots.acquire()  # meanwhile the next group grows
                self._delivered_waiting.clear()
                group, self._delivered = self._delivered, []
                groups.create_task(self._record(group, slots))

    async def _record(
        self, group: list[tuple[Job, datetime, EncodedEvent]], slots: asyncio.Semaphore
    ) -> None:
        try:
            await self._claims.finish_delivered([(job, at) for job, at, _ in group])
            await self._emit_encoded([record for _, _, record in group])
        except Exception as err:
            # claims left pending by a failed UPDATE are sent again by the sweeper once their
            # leases end
            report = log.warning if is_outage(err) else log.error
            report("webhook_deliveries_unrecorded", deliveries=len(group), error=repr(err))
        finally:
            slots.release()
            self._unrecorded -= len(group)
            if self._unrecorded == 0:
                self._all_recorded.set()

    async def _send(self, job: Job, now: datetime) -> AttemptResult:
        try:
            endpoint = await self._directory.get(job.endpoint_id, now)
        except SecretUnsealError as err:
            # a deployment-key problem the operator can fix: keep to the retry schedule
            return AttemptResult(Outcome.RETRYABLE, None, 0.0, str(err))
        if endpoint is not None and not endpoint.enabled:  # the cache may predate a re-enable
            self._directory.forget(job.endpoint_id)
            endpoint = await self._directory.get(job.endpoint_id, now)
        if endpoint is None or not endpoint.enabled or self._recently_gone(job.endpoint_id):
            return AttemptResult(Outcome.BLOCKED, None, 0.0, ENDPOINT_BLOCKED)
        return await self._sender.deliver(endpoint.target, job.message_id, job.body.encode())

    def _recently_gone(self, endpoint_id: str) -> bool:
        since = self._gone.get(endpoint_id)
        if since is not None and time.monotonic() - since > GONE_MEMORY_S:
            del self._gone[endpoint_id]
            return False
        return since is not None

    async def _claim_outcome(self, job: Job, step: Step, now: datetime) -> None:
        due = step.at or now
        match step.action:
            case Action.GIVE_UP | Action.DISABLE:
                await self._claims.finish(job, "failed", now)
            case Action.RETRY_SOON:
                await self._claims.extend(job, due, self.lease_from(due))
            case Action.RETRY_LATER:
                sweep_at = due + timedelta(seconds=self.settings.takeover_grace_s)
                await self._claims.schedule(job, due, sweep_at)

    def _failure_facts(
        self, job: Job, result: AttemptResult, step: Step, attempted_at: datetime, now: datetime
    ) -> list[Event]:
        def fact(cls: type[Event], **fields: Any) -> Event:
            return cls.create(
                producer=PRODUCER, time=now, correlationid=job.correlationid, **fields
            )

        delivery = {
            "message_id": job.message_id,
            "endpoint_id": job.endpoint_id,
            "reseller_id": job.reseller_id,
            "event_type": job.event_type,
        }
        failed = fact(
            WebhookDeliveryFailed, **delivery, attempt=job.attempt,
            status_code=result.status_code, latency_ms=result.latency_ms,
            attempted_at=attempted_at, response=result.answer, error=result.error or "failed",
            final=step.final, next_attempt_at=step.at,
        )  # fmt: skip
        match step.action:
            case Action.RETRY_LATER:
                later = fact(
                    WebhookRetryScheduled, **delivery, attempt=job.attempt + 1, due_at=step.at,
                    body=job.body,
                )  # fmt: skip
                return [failed, later]
            case Action.DISABLE:
                disabled = fact(
                    WebhookEndpointDisabled, reseller_id=job.reseller_id,
                    endpoint_id=job.endpoint_id, reason=GONE_REASON, message_id=job.message_id,
                    status_code=result.status_code,
                )  # fmt: skip
                return [failed, disabled]
        return [failed]

    def _endpoint_gone(self, endpoint_id: str) -> None:
        """Answered 410: refused here at once, before the read table says it is disabled."""
        self._gone[endpoint_id] = time.monotonic()
        self._directory.forget(endpoint_id)
        log.warning("webhook_endpoint_gone", endpoint_id=endpoint_id)

    async def _emit(self, facts: list[Event]) -> None:
        await self._emitting(self._bus.emit_many, facts)

    async def _emit_encoded(self, records: list[EncodedEvent]) -> None:
        await self._emitting(self._bus.emit_encoded, records)

    @staticmethod
    async def _emitting(emit: Callable[[list[T]], Awaitable[None]], items: list[T]) -> None:
        # the claim row already holds the outcome; the events are worth a few tries more
        for wait in EMIT_RETRIES_S:
            try:
                await emit(items)
            except BrokerUnavailable:
                await asyncio.sleep(wait)
            else:
                return
        await emit(items)
