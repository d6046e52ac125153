"""Carrier requests that failed retryably, retried with backoff and then given up
(``carrier_retries``, migration 0100).

An activation, cancel, suspend or restore the carrier could not do *now* (unavailable, or a
line without a number yet, which the status change needs) is emitted as a ``retryable``
failure. The provisioning handlers call ``after_outcome`` with each outcome: a retryable
failure opens (or advances) the SIM's row for that action with the time of its next attempt,
``HX_REQUEST_RETRY_DELAY_S`` doubling per failure; once ``HX_REQUEST_MAX_ATTEMPTS`` failed in a
row the row is given up and ``sim.operator_needed`` is emitted, which the SIM's page and list
show. A final outcome (done, or a refusal) removes the row. ``resend_due`` is the scheduler's
side: due rows become a copy of the failed request with ref ``<ref>:retry-<n>``, emitted in
the transaction that claims them (``FOR UPDATE SKIP LOCKED``: several schedulers send each
retry once).

A redelivered failure is counted once: a row only advances for a request it does not know
yet, or for the retry it is waiting on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import structlog

from consumers.effects import is_final
from events import codec
from events.envelope import Event
from events.sim import (
    SimActivationRequested,
    SimCancelRequested,
    SimOperatorNeeded,
    SimRestoreRequested,
    SimSuspendRequested,
)
from infra.bus import Bus
from infra.settings import HelixSettings

PRODUCER = "simfleet/scheduler"
RETRY_MARK = ":retry-"
ACTIONS: dict[str, str] = {
    SimActivationRequested.event_type(): "activate",
    SimCancelRequested.event_type(): "cancel",
    SimSuspendRequested.event_type(): "suspend",
    SimRestoreRequested.event_type(): "restore",
}
FAILED = """
INSERT INTO carrier_retries (iccid, action, request, request_id, failures, state, last_error,
                             next_retry_at, updated_at)
VALUES ($1, $2, $3, $4, 1, 'waiting', $5, NULL, $6)
ON CONFLICT (iccid, action) DO UPDATE
SET request = EXCLUDED.request, request_id = EXCLUDED.request_id,
    failures = carrier_retries.failures + 1, state = 'waiting', last_error = EXCLUDED.last_error,
    updated_at = EXCLUDED.updated_at
WHERE carrier_retries.request_id <> EXCLUDED.request_id OR carrier_retries.state = 'requested'
RETURNING failures
"""
SCHEDULE = """
UPDATE carrier_retries SET next_retry_at = $3, state = CASE WHEN $3::timestamptz IS NULL
    THEN 'operator' ELSE 'waiting' END
WHERE iccid = $1 AND action = $2
"""
DONE = "DELETE FROM carrier_retries WHERE iccid = $1 AND action = $2"
DONE_MANY = """
DELETE FROM carrier_retries r USING unnest($1::text[], $2::text[]) AS t(iccid, action)
WHERE r.iccid = t.iccid AND r.action = t.action
"""
CLAIM_DUE = """
SELECT iccid, action, request, failures FROM carrier_retries
WHERE state = 'waiting' AND next_retry_at <= $1
ORDER BY next_retry_at LIMIT $2 FOR UPDATE SKIP LOCKED
"""
MARK_REQUESTED = """
UPDATE carrier_retries SET state = 'requested', request_id = $3, updated_at = $4
WHERE iccid = $1 AND action = $2
"""
log = structlog.get_logger("simfleet.carrier_retries")


@dataclass(frozen=True)
class RequestRetries:
    delay_s: float = 300.0
    max_attempts: int = 5

    @classmethod
    def from_settings(cls, hx: HelixSettings) -> RequestRetries:
        return cls(hx.request_retry_delay_s, hx.request_max_attempts)

    def next_at(self, failures: int, now: datetime) -> datetime | None:
        """When the request is sent again after ``failures`` in a row; None: give up."""
        if failures >= self.max_attempts:
            return None
        return now + timedelta(seconds=self.delay_s * 2 ** (failures - 1))


def retry_ref(ref: str, attempt: int) -> str:
    return f"{ref.split(RETRY_MARK, 1)[0]}{RETRY_MARK}{attempt}"


async def after_outcome(
    pool: asyncpg.Pool,
    bus: Bus,
    request: Event,
    outcome: Event | None,
    *,
    policy: RequestRetries,
    now: datetime,
    close: Callable[[tuple[str, str]], Awaitable[None]] | None = None,
) -> None:
    """Opens, advances or closes the SIM's retry row for the request's action; ``close`` closes
    it with the rows of other SIMs (``close_many``)."""
    if outcome is None:
        return
    iccid, action = outcome.subject, ACTIONS[request.type]
    if not is_final(outcome):
        await _failed(pool, bus, request, outcome, policy=policy, now=now)
    elif close is not None:
        await close((iccid, action))
    else:
        await pool.execute(DONE, iccid, action)


async def _failed(
    pool: asyncpg.Pool,
    bus: Bus,
    request: Event,
    outcome: Event,
    *,
    policy: RequestRetries,
    now: datetime,
) -> None:
    """A retryable failure counted: the next attempt scheduled, or the request given up."""
    iccid, action = outcome.subject, ACTIONS[request.type]
    reason = str(getattr(outcome.data, "reason", ""))
    async with pool.acquire() as conn, conn.transaction():
        failures = await conn.fetchval(
            FAILED, iccid, action, request.model_dump(mode="json"), request.id, reason, now
        )
        if failures is None:
            return  # this failure was counted before (a redelivery)
        retry = policy.next_at(failures, now)
        await conn.execute(SCHEDULE, iccid, action, retry)
        if retry is not None:
            log.info("carrier_request_retry_scheduled", iccid=iccid, action=action, at=retry)
            return
        log.warning("carrier_request_given_up", iccid=iccid, action=action, failures=failures)
        given_up = SimOperatorNeeded.of(
            request, producer="simfleet/provisioning", time=now, iccid=iccid, action=action,
            reason=reason, attempts=failures, request_id=request.id,
        )  # fmt: skip
        await bus.emit(given_up)


async def close_many(pool: asyncpg.Pool, keys: Sequence[tuple[str, str]]) -> list[None]:
    """The retry rows of these (iccid, action) closed, in one statement."""
    iccids, actions = zip(*keys, strict=True)
    await pool.execute(DONE_MANY, iccids, actions)
    return [None] * len(keys)


async def resend_due(pool: asyncpg.Pool, bus: Bus, now: datetime, limit: int = 500) -> int:
    """Due retries sent again (a copy of the failed request, a new ref); returns how many."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(CLAIM_DUE, now, limit)
        requests = [_again(row, now) for row in rows]
        for row, event in zip(rows, requests, strict=True):
            await conn.execute(MARK_REQUESTED, row["iccid"], row["action"], event.id, now)
        await bus.emit_many(requests)
    if requests:
        log.info("carrier_requests_retried", count=len(requests))
    return len(requests)


def _again(row: asyncpg.Record, now: datetime) -> Event:
    failed = codec.decode(row["request"])
    fields = failed.data.model_dump() | {
        "ref": retry_ref(failed.data.ref, row["failures"] + 1),  # type: ignore[attr-defined]
        "requested_by": "system",
        "command": None,
    }
    return type(failed).create(
        producer=PRODUCER, time=now, correlationid=failed.correlationid, **fields
    )
