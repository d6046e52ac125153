"""SIMs: ``sim.lifecycle`` → ``sims``, ``sim_numbers`` (and ``sim_applied_events``).

Reads every state-changing type on the topic: activation requested/activated/failed, number
assigned, MDN change requested/changed/failed, verification sent/skipped, number online /
verification failed, cancelled, suspended, restored, cancel/status-change failed, reseller
assigned, inbound silent/resumed (``sims.inbound_silent_since``), verification sender
suspect/cleared (``sims.verification_suspect_since``). Requests that change nothing by themselves (cancel, suspend, restore, sync,
verification requested) are not read.

Status (the original's words): ``pending`` until activated, ``provisioning`` while the line is
active at the carrier without a number, ``active`` once it has one, then ``suspended`` /
``cancelled``; ``error`` when activation failed. A cancelled SIM has no current number (its last
number's ``sim_numbers`` row is closed).

Each event is applied once: its id goes into ``sim_applied_events`` in the batch transaction,
because a re-published event (a re-imported sheet, an outcome re-emitted by the effects ledger)
arrives at a later offset and must not move a SIM back to an older state. Events of one SIM sit
on one partition, so applying in offset order is applying in causal order. Consecutive events
sharing a statement go to Postgres in one pipelined ``executemany``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never, cast

import asyncpg

from events.envelope import Event
from events.sim import (
    AttentionAction,
    MdnChanged,
    MdnChangeFailed,
    MdnChangeRequested,
    NumberAssigned,
    NumberOnline,
    NumberVerificationFailed,
    SimActivated,
    SimActivationFailed,
    SimActivationRequested,
    SimCancelFailed,
    SimCancelled,
    SimCancelRequested,
    SimInboundResumed,
    SimInboundSilent,
    SimLifecycleEvent,
    SimOperatorNeeded,
    SimResellerAssigned,
    SimRestored,
    SimRestoreRequested,
    SimStatusChangeFailed,
    SimSuspended,
    SimSuspendRequested,
    SyncRequested,
    VerificationRequested,
    VerificationSenderCleared,
    VerificationSenderSuspect,
    VerificationSent,
    VerificationSkipped,
)
from events.topics import SIM_LIFECYCLE, Topic
from projections.batches import Record


def _clears_attention(action: AttentionAction, row: str = "") -> str:
    """SET items: a success of ``action`` clears the operator flag raised for that action, and
    leaves a flag raised for another as it is. ``row``: the existing row's name in an upsert.
    The statements below are built from it once, at import, from constants only."""
    return f"""operator_needed = CASE WHEN {row}operator_needed_action = '{action}' THEN NULL
                           ELSE {row}operator_needed END,
    operator_needed_since = CASE WHEN {row}operator_needed_action = '{action}' THEN NULL
                                 ELSE {row}operator_needed_since END,
    operator_needed_action = NULLIF({row}operator_needed_action, '{action}')"""


MARK_APPLIED = """
INSERT INTO sim_applied_events (event_id) SELECT unnest($1::text[])
ON CONFLICT (event_id) DO NOTHING RETURNING event_id
"""
# a new request refreshes a SIM that is not (or no longer) active at the carrier
UPSERT_REQUESTED = """
INSERT INTO sims (iccid, imei, status, reseller_id, gateway_id, port, activation_request_id,
                  activation_requested_at)
VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7)
ON CONFLICT (iccid) DO UPDATE
SET imei = EXCLUDED.imei, status = 'pending', last_error = NULL,
    activation_request_id = EXCLUDED.activation_request_id,
    activation_requested_at = EXCLUDED.activation_requested_at,
    reseller_id = COALESCE(EXCLUDED.reseller_id, sims.reseller_id),
    gateway_id = COALESCE(EXCLUDED.gateway_id, sims.gateway_id),
    port = COALESCE(EXCLUDED.port, sims.port), updated_at = now()
WHERE sims.status IN ('pending', 'error', 'cancelled')
"""
# a (new) subscription: no number until the carrier assigns one. The line a SIM already has
# (an "already active" activation found it) keeps its number and status.
UPSERT_ACTIVATED = f"""
INSERT INTO sims (iccid, imei, status, mobility_subscription_id, activation_id, activated_at)
VALUES ($1, $2, 'provisioning', $3, $4, $5)
ON CONFLICT (iccid) DO UPDATE
SET status = CASE WHEN sims.mobility_subscription_id = EXCLUDED.mobility_subscription_id
                       AND sims.status IN ('active', 'suspended') THEN sims.status
                  ELSE 'provisioning' END,
    current_number = CASE WHEN sims.mobility_subscription_id = EXCLUDED.mobility_subscription_id
                          THEN sims.current_number END,
    number_status = CASE WHEN sims.mobility_subscription_id = EXCLUDED.mobility_subscription_id
                         THEN sims.number_status END,
    imei = COALESCE(EXCLUDED.imei, sims.imei),
    mobility_subscription_id = EXCLUDED.mobility_subscription_id,
    activation_id = EXCLUDED.activation_id, activated_at = EXCLUDED.activated_at,
    last_error = NULL, activation_request_id = NULL, activation_requested_at = NULL,
    {_clears_attention("activate", "sims.")},
    updated_at = now()
"""  # noqa: S608  (constants only)
# "already has an active subscription" must not flag a working SIM as broken
UPSERT_ACTIVATION_FAILED = """
INSERT INTO sims (iccid, status, last_error) VALUES ($1, 'error', $2)
ON CONFLICT (iccid) DO UPDATE
SET last_error = EXCLUDED.last_error, updated_at = now(),
    activation_request_id = NULL, activation_requested_at = NULL,
    status = CASE WHEN sims.status IN ('pending', 'provisioning', 'error') THEN 'error'
                  ELSE sims.status END
"""
ASSIGN_NUMBER = """
WITH closed AS (
    UPDATE sim_numbers SET valid_to = $5
    WHERE iccid = $1 AND valid_to IS NULL AND e164 <> $2
), added AS (
    INSERT INTO sim_numbers (assignment_id, iccid, e164, source, valid_from)
    SELECT $3, $1, $2, $4, $5
    WHERE NOT EXISTS (
        SELECT 1 FROM sim_numbers WHERE iccid = $1 AND e164 = $2 AND valid_to IS NULL)
    ON CONFLICT (assignment_id) DO NOTHING
)
INSERT INTO sims (iccid, status, current_number, number_status, mobility_subscription_id)
VALUES ($1, 'active', $2, 'pending', $6)
ON CONFLICT (iccid) DO UPDATE
SET number_status = CASE
        WHEN sims.current_number IS DISTINCT FROM EXCLUDED.current_number
             OR sims.number_status IS NULL THEN 'pending'
        ELSE sims.number_status END,
    current_number = EXCLUDED.current_number,
    status = CASE WHEN sims.status IN ('pending', 'provisioning', 'error') THEN 'active'
                  ELSE sims.status END,
    last_error = CASE WHEN sims.status = 'error' THEN NULL ELSE sims.last_error END,
    mobility_subscription_id = COALESCE(EXCLUDED.mobility_subscription_id,
                                        sims.mobility_subscription_id),
    updated_at = now()
"""

MARK_ROTATING = """
UPDATE sims SET rotation_status = 'rotating', updated_at = now() WHERE iccid = $1
"""
MARK_ROTATED = f"""
UPDATE sims SET rotation_status = 'success', last_rotated_at = $2,
    rotation_count = rotation_count + 1, rotation_attempts = 0, rotation_last_error = NULL,
    updated_at = now(),
    {_clears_attention("rotate")}
WHERE iccid = $1
"""  # noqa: S608  (constants only)
MARK_ROTATION_FAILED = """
UPDATE sims SET rotation_status = 'failed', rotation_last_error = $2,
    rotation_attempts = rotation_attempts + 1, updated_at = now()
WHERE iccid = $1
"""
# $3 the new verification status; a late timeout never overrides a verified number
MARK_VERIFICATION = """
WITH num AS (
    UPDATE sim_numbers SET verification_status = $3,
        verification_code = COALESCE($4, verification_code),
        sender_iccid = COALESCE($5, sender_iccid),
        sent_at = COALESCE($6, sent_at), expires_at = COALESCE($7, expires_at),
        verified_at = CASE WHEN $3 = 'verified' THEN $8 ELSE verified_at END,
        failed_at = CASE WHEN $3 = 'failed' THEN $8 ELSE failed_at END
    WHERE iccid = $1 AND e164 = $2 AND valid_to IS NULL
      AND NOT ($3 = 'failed' AND verification_status = 'verified')
)
UPDATE sims SET number_status = $3, updated_at = now()
WHERE iccid = $1 AND current_number = $2
  AND NOT ($3 = 'failed' AND number_status IS NOT DISTINCT FROM 'verified')
"""
MARK_CANCELLED = f"""
WITH closed AS (
    UPDATE sim_numbers SET valid_to = $2 WHERE iccid = $1 AND valid_to IS NULL
)
UPDATE sims SET status = 'cancelled', current_number = NULL, number_status = NULL,
    last_error = NULL, updated_at = now(),
    {_clears_attention("cancel")}
WHERE iccid = $1
"""  # noqa: S608  (constants only)
MARK_SUSPENDED = f"""
UPDATE sims SET status = 'suspended', last_error = NULL, updated_at = now(),
    {_clears_attention("suspend")}
WHERE iccid = $1 AND status IN ('active', 'provisioning')
"""  # noqa: S608  (constants only)
MARK_RESTORED = f"""
UPDATE sims SET last_error = NULL, updated_at = now(),
    {_clears_attention("restore")},
    status = CASE WHEN current_number IS NULL THEN 'provisioning' ELSE 'active' END
WHERE iccid = $1 AND status = 'suspended'
"""  # noqa: S608  (constants only)
MARK_OPERATOR_NEEDED = """
UPDATE sims SET operator_needed = $3, operator_needed_action = $2, operator_needed_since = $4,
    updated_at = now()
WHERE iccid = $1
"""
MARK_REQUEST_FAILED = "UPDATE sims SET last_error = $2, updated_at = now() WHERE iccid = $1"
UPSERT_RESELLER = """
INSERT INTO sims (iccid, reseller_id) VALUES ($1, $2)
ON CONFLICT (iccid) DO UPDATE SET reseller_id = EXCLUDED.reseller_id, updated_at = now()
"""
MARK_SILENT = "UPDATE sims SET inbound_silent_since = $2, updated_at = now() WHERE iccid = $1"
MARK_RESUMED = """
UPDATE sims SET inbound_silent_since = NULL, updated_at = now()
WHERE iccid = $1 AND inbound_silent_since = $2
"""
MARK_SUSPECT_SENDER = """
UPDATE sims SET verification_suspect_since = $2, updated_at = now() WHERE iccid = $1
"""
CLEAR_SUSPECT_SENDER = """
UPDATE sims SET verification_suspect_since = NULL, updated_at = now() WHERE iccid = $1
"""

Statement = tuple[str, tuple[Any, ...]]  # the SQL an event runs and its arguments


def statement(event: SimLifecycleEvent) -> Statement | None:
    """What one event of ``sim.lifecycle`` changes in the tables; ``None``: a request that
    changes nothing by itself. Exhaustive: a new type on the topic fails the type check here."""
    match event:
        case SimActivationRequested(data=d):
            where = (d.reseller_id, d.gateway_id, d.port)
            return UPSERT_REQUESTED, (d.iccid, d.imei, *where, event.id, event.time)
        case SimActivated(data=d):
            subscription = d.mobility_subscription_id
            return UPSERT_ACTIVATED, (d.iccid, d.imei, subscription, event.id, event.time)
        case SimActivationFailed(data=d):
            return UPSERT_ACTIVATION_FAILED, (d.iccid, d.reason)
        case NumberAssigned(data=d):
            known = d.mobility_subscription_id  # None: the SIM keeps the one it has
            return ASSIGN_NUMBER, (d.iccid, d.number, event.id, d.source, event.time, known)
        case MdnChangeRequested(data=d):
            return MARK_ROTATING, (d.iccid,)
        case MdnChanged(data=d):
            return MARK_ROTATED, (d.iccid, event.time)
        case MdnChangeFailed(data=d):
            return MARK_ROTATION_FAILED, (d.iccid, d.reason)
        case VerificationSent(data=d):
            sent = (d.code, d.sender_iccid, d.sent_at, d.expires_at)
            return MARK_VERIFICATION, (d.iccid, d.number, "sent", *sent, event.time)
        case VerificationSkipped(data=d):
            return MARK_VERIFICATION, (d.iccid, d.number, "skipped", *_NOT_SENT, event.time)
        case NumberOnline(data=d):
            return MARK_VERIFICATION, (d.iccid, d.number, "verified", *_NOT_SENT, event.time)
        case NumberVerificationFailed(data=d):
            return MARK_VERIFICATION, (d.iccid, d.number, "failed", *_NOT_SENT, event.time)
        case SimCancelled(data=d):
            return MARK_CANCELLED, (d.iccid, event.time)
        case SimSuspended(data=d):
            return MARK_SUSPENDED, (d.iccid,)
        case SimRestored(data=d):
            return MARK_RESTORED, (d.iccid,)
        case SimCancelFailed(data=d) | SimStatusChangeFailed(data=d):
            return MARK_REQUEST_FAILED, (d.iccid, d.reason)
        case SimOperatorNeeded(data=d):
            return MARK_OPERATOR_NEEDED, (d.iccid, d.action, d.reason, event.time)
        case SimResellerAssigned(data=d):
            return UPSERT_RESELLER, (d.iccid, d.reseller_id)
        case SimInboundSilent(data=d):
            return MARK_SILENT, (d.iccid, d.silent_since)
        case SimInboundResumed(data=d):
            return MARK_RESUMED, (d.iccid, d.silent_since)
        case VerificationSenderSuspect(data=d):
            return MARK_SUSPECT_SENDER, (d.iccid, event.time)
        case VerificationSenderCleared(data=d):
            return CLEAR_SUSPECT_SENDER, (d.iccid,)
        case (
            SimCancelRequested()
            | SimSuspendRequested()
            | SimRestoreRequested()
            | SyncRequested()
            | VerificationRequested()
        ):
            return None
        case _:
            assert_never(event)


_NOT_SENT = (None, None, None, None)  # code, sender ICCID, sent at, expires at


class SimsProjection:
    name = "sims"
    topics: tuple[Topic, ...] = (SIM_LIFECYCLE,)
    tables: tuple[str, ...] = ("sims", "sim_numbers", "sim_applied_events")

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        # the runner decodes this topic with its own decoder: every event is of its union
        changes = [(r.event, statement(cast(SimLifecycleEvent, r.event))) for r in records]
        events = [(event, change) for event, change in changes if change is not None]
        if not events:
            return
        fresh = {r[0] for r in await conn.fetch(MARK_APPLIED, [e.id for e, _ in events])}
        runs: list[tuple[str, list[tuple[Any, ...]]]] = []
        for sql, args in _first_of_each(events, fresh):
            if not runs or runs[-1][0] != sql:
                runs.append((sql, []))
            runs[-1][1].append(args)
        for sql, rows in runs:
            await conn.executemany(sql, rows)


def _first_of_each(events: list[tuple[Event, Statement]], fresh: set[str]) -> list[Statement]:
    """The changes of events not applied before, in order, each once even if the batch
    repeats it."""
    chosen = []
    for event, change in events:
        if event.id in fresh:
            fresh.discard(event.id)
            chosen.append(change)
    return chosen
