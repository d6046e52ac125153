"""Delivery workers: each endpoint's deliveries wait in its own line, never in the handler.

The consumer hands over deliveries already claimed in ``webhook_claims`` (so the source offset
may be committed: the claim row is the durable copy). An endpoint's line is worked by up to
``per_endpoint_concurrency`` tasks, each taking the next delivery when done with one: it signs
and POSTs, records the outcome in the claim row *then* as events on ``webhook.deliveries``. A
delivery to try again within seconds (the fast schedule, 1, 2, 4, 8 s) goes on in a task of its
own, so its pause holds no worker; after that it is handed to ``webhook.retry``. A due-time heap
makes retries read from that topic when due, and a sweeper takes over every claim whose owner
went quiet (crash, restart, overflow) — so a delivery is lost only if Postgres loses it.

Why workers rather than a task per delivery: a catch-up puts a thousand deliveries in an
endpoint's line, and a task each (created, parked on the endpoint's semaphore, woken, ended)
cost ~7 % of the consumer's CPU per delivery.

Bounds: ``max_in_flight`` deliveries in all (the consumer waits for room), ``per_endpoint_queue``
per endpoint (beyond that the claim is released to the sweeper), and the sender's slots. A
hanging endpoint therefore holds at most its own share and never stalls the consumer or other
endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import Counter, deque
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType

import structlog

from consumers.webhooks.attempts import Attempts
from consumers.webhooks.claims import Claims, Job
from consumers.webhooks.rules import Action
from infra.clock import Clock
from infra.outages import OUTAGE_TYPES
from infra.settings import WebhookSettings
from infra.supervision import supervised

HEAP_HORIZON_S = 900.0  # later retries stay in Postgres only; the sweeper brings them back
SWEEP_BATCH = 500
# on leaving: how long the deliveries made may take to be written before the recorder stops
RECORDING_WAIT_S = 5.0

log = structlog.get_logger("simfleet.webhooks")

# a retry read from webhook.retry, not yet taken from Postgres: (message, endpoint, attempt)
Due = tuple[str, str, int]


@dataclass
class _Line:
    """An endpoint's deliveries waiting for one of its workers, and how many work it."""

    waiting: deque[tuple[Job | None, Due | None]] = field(default_factory=deque)
    workers: int = 0


class Dispatcher:
    def __init__(
        self,
        settings: WebhookSettings,
        *,
        claims: Claims,
        attempts: Attempts,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.claims = claims
        self._attempts = attempts
        self._clock = clock
        self._live: Counter[str] = Counter()
        self._in_flight = 0  # the sum of _live, kept: Counter.total() walks every endpoint
        self._tasks: set[asyncio.Task[None]] = set()
        self._lines: dict[str, _Line] = {}
        self._room = asyncio.Event()
        self._room.set()
        # endpoints whose surplus waits in Postgres: swept again as soon as they drain
        self._overflowed: set[str] = set()
        self._sweep_now = asyncio.Event()
        self._closing = asyncio.Event()
        self._heap: list[tuple[datetime, int, str, str, int]] = []
        self._heap_changed = asyncio.Event()
        self._order = itertools.count()

    def lease_from(self, now: datetime) -> datetime:
        return self._attempts.lease_from(now)

    def endpoint_enabled(self, endpoint_id: str) -> None:
        self._attempts.endpoint_enabled(endpoint_id)

    @property
    def _low_water(self) -> int:
        return self.settings.per_endpoint_queue // 2

    @contextlib.asynccontextmanager
    async def running(self, stop: asyncio.Event) -> AsyncIterator[Dispatcher]:
        """Runs the sweeper, heap and recorder for the block, supervised: one of them failing
        sets ``stop`` (the process ends rather than leave deliveries waiting). On exit,
        in-flight POSTs may finish."""
        loops = supervised(
            "webhook-dispatcher",
            stop,
            self._sweep_loop(),
            self._heap_loop(),
            self._attempts.record_delivered(),
            finishing=self._closing,
        )
        async with loops:
            try:
                yield self
            finally:
                self._closing.set()
                self._sweep_now.set()
                if self._tasks:
                    await asyncio.wait(set(self._tasks), timeout=self.settings.timeout_s + 2)
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                # the deliveries made are written before the recorder stops with the loops
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RECORDING_WAIT_S):
                        await self._attempts.all_recorded()

    async def room(self) -> None:
        await self._room.wait()

    async def submit(self, jobs: Sequence[Job]) -> None:
        """Starts a task per job; jobs of a full endpoint go back to the sweeper."""
        refused = [job for job in jobs if not self._spawn(job)]
        self._overflowed.update(job.endpoint_id for job in refused)
        await self.claims.release(refused, self._clock.now())

    def schedule(self, message_id: str, endpoint_id: str, attempt: int, due_at: datetime) -> None:
        """A retry read from webhook.retry: attempted when due (if it is still ours to make)."""
        if (due_at - self._clock.now()).total_seconds() > HEAP_HORIZON_S:
            return
        if len(self._heap) < self.settings.max_in_flight:
            heapq.heappush(
                self._heap, (due_at, next(self._order), message_id, endpoint_id, attempt)
            )
            self._heap_changed.set()

    def _spawn(self, job: Job | None, due: Due | None = None) -> bool:
        """Puts the delivery in its endpoint's line, with a worker more while the endpoint has
        fewer than ``per_endpoint_concurrency``; False when the line is full."""
        endpoint_id = job.endpoint_id if job else due[1] if due else ""
        if self._closing.is_set() or self._live[endpoint_id] >= self.settings.per_endpoint_queue:
            return False
        self._live[endpoint_id] += 1
        self._in_flight += 1
        if self._in_flight >= self.settings.max_in_flight:
            self._room.clear()
        line = self._lines.get(endpoint_id)
        if line is None:
            line = self._lines[endpoint_id] = _Line()
        line.waiting.append((job, due))
        if line.workers < self.settings.per_endpoint_concurrency:
            line.workers += 1
            self._start(self._work(endpoint_id, line))
        return True

    def _start(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # the claim stays pending: the sweeper retries it once the lease ends
            log.error("webhook_delivery_crashed", error=repr(task.exception()))

    async def _work(self, endpoint_id: str, line: _Line) -> None:
        """Delivers from the endpoint's line until it is empty."""
        try:
            while line.waiting:
                job, due = line.waiting.popleft()
                await self._attempt(job, due, endpoint_id)
        finally:
            line.workers -= 1
            if line.workers == 0 and self._lines.get(endpoint_id) is line:
                del self._lines[endpoint_id]

    async def _attempt(self, job: Job | None, due: Due | None, endpoint_id: str) -> None:
        """One attempt (a due retry first taken from Postgres, if still ours to make). Never
        raises but for a cancel: the worker goes on with the line."""
        handed_over = False
        try:
            with _failures_logged(endpoint_id):
                if job is None and due is not None:
                    job = await self.claims.take_due(*due, self.lease_from(self._clock.now()))
                if job is not None:
                    step = await self._attempts.make(job)
                    if step.action is Action.RETRY_SOON:
                        self._start(self._retrying_soon(job, step.at, endpoint_id))
                        handed_over = True
        finally:
            if not handed_over:
                self._finished(endpoint_id)

    async def _retrying_soon(self, job: Job, at: datetime | None, endpoint_id: str) -> None:
        """The fast schedule's pauses and attempts, in a task of its own."""
        try:
            with _failures_logged(endpoint_id):
                while await self._pause_until(at):
                    lease = self.lease_from(self._clock.now())
                    next_job = await self.claims.next_attempt(job, lease)
                    if next_job is None:
                        return
                    job = next_job
                    step = await self._attempts.make(job)
                    if step.action is not Action.RETRY_SOON:
                        return
                    at = step.at
        finally:
            self._finished(endpoint_id)

    def _finished(self, endpoint: str) -> None:
        """A delivery left the dispatcher: its room given back."""
        self._live[endpoint] -= 1
        self._in_flight -= 1
        if self._live[endpoint] <= 0:
            del self._live[endpoint]
        if endpoint in self._overflowed and self._live[endpoint] <= self._low_water:
            self._overflowed.discard(endpoint)
            self._sweep_now.set()
        if self._in_flight < self.settings.max_in_flight:
            self._room.set()

    async def _pause_until(self, at: datetime | None) -> bool:
        """Sleeps until ``at``; False when the dispatcher is closing (the sweeper resumes it)."""
        delay = 0.0 if at is None else (at - self._clock.now()).total_seconds()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=max(delay, 0.0))
        return not self._closing.is_set()

    async def _heap_loop(self) -> None:
        while not self._closing.is_set():
            now = self._clock.now()
            while self._heap and self._heap[0][0] <= now:
                _, _, message_id, endpoint_id, attempt = heapq.heappop(self._heap)
                # no room now: the claim stays scheduled and the sweeper takes it after the grace
                self._spawn(None, (message_id, endpoint_id, attempt))
            wait = (self._heap[0][0] - now).total_seconds() if self._heap else HEAP_HORIZON_S
            self._heap_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heap_changed.wait(), timeout=max(wait, 0.001))

    async def _sweep_loop(self) -> None:
        while not self._closing.is_set():
            free = self.settings.max_in_flight - self._in_flight
            if free > 0:
                try:
                    await self._sweep(min(free, SWEEP_BATCH))
                except OUTAGE_TYPES as err:  # waited out: the next round sweeps again
                    log.warning("webhook_sweep_interrupted", error=repr(err))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sweep_now.wait(), self.settings.sweep_interval_s)
            self._sweep_now.clear()

    async def _sweep(self, limit: int) -> None:
        now = self._clock.now()
        full = [e for e, n in self._live.items() if n >= self.settings.per_endpoint_queue]
        jobs = await self.claims.sweep(now, self.lease_from(now), full, limit)
        if jobs:
            log.info("webhook_deliveries_taken_over", count=len(jobs))
            await self.submit(jobs)
        if len(jobs) == limit:
            # a full batch: more may wait in Postgres, behind these endpoints (swept again as
            # they drain) and others (swept again now): a backlog larger than the lines goes
            # through at the endpoints' pace, not a batch per sweep interval
            self._overflowed.update(job.endpoint_id for job in jobs)
            self._sweep_now.set()


class _failures_logged:  # noqa: N801 - read as the context manager it is
    """An attempt that failed is logged and goes no further; its claim stays pending, and the
    sweeper retries it once the lease ends. A cancel passes. A class rather than a generator:
    entered once per delivery, where ``contextlib``'s machinery cost a microsecond."""

    __slots__ = ("endpoint_id",)

    def __init__(self, endpoint_id: str) -> None:
        self.endpoint_id = endpoint_id

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if err is None or not isinstance(err, Exception):
            return False
        if isinstance(err, OUTAGE_TYPES):  # Postgres or the broker away
            log.warning(
                "webhook_delivery_interrupted", endpoint_id=self.endpoint_id, error=repr(err)
            )
        else:
            log.error("webhook_delivery_crashed", endpoint_id=self.endpoint_id, exc_info=err)
        return True
