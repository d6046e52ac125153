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

from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from events.envelope import Event
from events.topics import SIM_LIFECYCLE, Topic
from projections.runner import Record

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
UPSERT_ACTIVATED = """
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
    operator_needed = CASE WHEN sims.operator_needed_action = 'activate' THEN NULL
                           ELSE sims.operator_needed END,
    operator_needed_since = CASE WHEN sims.operator_needed_action = 'activate' THEN NULL
                                 ELSE sims.operator_needed_since END,
    operator_needed_action = NULLIF(sims.operator_needed_action, 'activate'),
    updated_at = now()
"""
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
MARK_ROTATED = """
UPDATE sims SET rotation_status = 'success', last_rotated_at = $2,
    rotation_count = rotation_count + 1, rotation_attempts = 0, rotation_last_error = NULL,
    updated_at = now(),
    operator_needed = CASE WHEN operator_needed_action = 'rotate' THEN NULL
                           ELSE operator_needed END,
    operator_needed_since = CASE WHEN operator_needed_action = 'rotate' THEN NULL
                                 ELSE operator_needed_since END,
    operator_needed_action = NULLIF(operator_needed_action, 'rotate')
WHERE iccid = $1
"""
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
MARK_CANCELLED = """
WITH closed AS (
    UPDATE sim_numbers SET valid_to = $2 WHERE iccid = $1 AND valid_to IS NULL
)
UPDATE sims SET status = 'cancelled', current_number = NULL, number_status = NULL,
    last_error = NULL, updated_at = now(),
    operator_needed = CASE WHEN operator_needed_action = 'cancel' THEN NULL
                           ELSE operator_needed END,
    operator_needed_since = CASE WHEN operator_needed_action = 'cancel' THEN NULL
                                 ELSE operator_needed_since END,
    operator_needed_action = NULLIF(operator_needed_action, 'cancel')
WHERE iccid = $1
"""
MARK_SUSPENDED = """
UPDATE sims SET status = 'suspended', last_error = NULL, updated_at = now(),
    operator_needed = CASE WHEN operator_needed_action = 'suspend' THEN NULL
                           ELSE operator_needed END,
    operator_needed_since = CASE WHEN operator_needed_action = 'suspend' THEN NULL
                                 ELSE operator_needed_since END,
    operator_needed_action = NULLIF(operator_needed_action, 'suspend')
WHERE iccid = $1 AND status IN ('active', 'provisioning')
"""
MARK_RESTORED = """
UPDATE sims SET last_error = NULL, updated_at = now(),
    operator_needed = CASE WHEN operator_needed_action = 'restore' THEN NULL
                           ELSE operator_needed END,
    operator_needed_since = CASE WHEN operator_needed_action = 'restore' THEN NULL
                                 ELSE operator_needed_since END,
    operator_needed_action = NULLIF(operator_needed_action, 'restore'),
    status = CASE WHEN current_number IS NULL THEN 'provisioning' ELSE 'active' END
WHERE iccid = $1 AND status = 'suspended'
"""
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

Statement = tuple[str, Callable[[Any], tuple[Any, ...]]]  # SQL and its arguments from an event


def _verification(status: str) -> Callable[[Any], tuple[Any, ...]]:
    def args(e: Any) -> tuple[Any, ...]:
        d = e.data
        sent = (getattr(d, "code", None), getattr(d, "sender_iccid", None))
        times = (getattr(d, "sent_at", None), getattr(d, "expires_at", None))
        return (d.iccid, d.number, status, *sent, *times, e.time)

    return args


STATEMENTS: dict[str, Statement] = {
    "sim.activation_requested": (
        UPSERT_REQUESTED,
        lambda e: (
            e.data.iccid,
            e.data.imei,
            e.data.reseller_id,
            e.data.gateway_id,
            e.data.port,
            e.id,
            e.time,
        ),
    ),
    "sim.activated": (
        UPSERT_ACTIVATED,
        lambda e: (e.data.iccid, e.data.imei, e.data.mobility_subscription_id, e.id, e.time),
    ),
    "sim.activation_failed": (UPSERT_ACTIVATION_FAILED, lambda e: (e.data.iccid, e.data.reason)),
    "number.assigned": (
        ASSIGN_NUMBER,
        lambda e: (
            e.data.iccid,
            e.data.number,
            e.id,
            e.data.source,
            e.time,
            e.data.mobility_subscription_id,
        ),
    ),
    "mdn.change_requested": (MARK_ROTATING, lambda e: (e.data.iccid,)),
    "mdn.changed": (MARK_ROTATED, lambda e: (e.data.iccid, e.time)),
    "mdn.change_failed": (MARK_ROTATION_FAILED, lambda e: (e.data.iccid, e.data.reason)),
    "verification.sent": (MARK_VERIFICATION, _verification("sent")),
    "verification.skipped": (MARK_VERIFICATION, _verification("skipped")),
    "number.online": (MARK_VERIFICATION, _verification("verified")),
    "number.verification_failed": (MARK_VERIFICATION, _verification("failed")),
    "sim.cancelled": (MARK_CANCELLED, lambda e: (e.data.iccid, e.time)),
    "sim.suspended": (MARK_SUSPENDED, lambda e: (e.data.iccid,)),
    "sim.restored": (MARK_RESTORED, lambda e: (e.data.iccid,)),
    "sim.cancel_failed": (MARK_REQUEST_FAILED, lambda e: (e.data.iccid, e.data.reason)),
    "sim.status_change_failed": (MARK_REQUEST_FAILED, lambda e: (e.data.iccid, e.data.reason)),
    "sim.operator_needed": (
        MARK_OPERATOR_NEEDED,
        lambda e: (e.data.iccid, e.data.action, e.data.reason, e.time),
    ),
    "sim.reseller_assigned": (UPSERT_RESELLER, lambda e: (e.data.iccid, e.data.reseller_id)),
    "sim.inbound_silent": (MARK_SILENT, lambda e: (e.data.iccid, e.data.silent_since)),
    "sim.inbound_resumed": (MARK_RESUMED, lambda e: (e.data.iccid, e.data.silent_since)),
    "verification.sender_suspect": (MARK_SUSPECT_SENDER, lambda e: (e.data.iccid, e.time)),
    "verification.sender_cleared": (CLEAR_SUSPECT_SENDER, lambda e: (e.data.iccid,)),
}


class SimsProjection:
    name = "sims"
    topics: tuple[Topic, ...] = (SIM_LIFECYCLE,)
    tables: tuple[str, ...] = ("sims", "sim_numbers", "sim_applied_events")

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        events = [r.event for r in records if r.event.type in STATEMENTS]
        if not events:
            return
        fresh = {r[0] for r in await conn.fetch(MARK_APPLIED, [e.id for e in events])}
        runs: list[tuple[str, list[tuple[Any, ...]]]] = []
        for event in _first_of_each(events, fresh):
            sql, args = STATEMENTS[event.type]
            if not runs or runs[-1][0] != sql:
                runs.append((sql, []))
            runs[-1][1].append(args(event))
        for sql, rows in runs:
            await conn.executemany(sql, rows)


def _first_of_each(events: list[Event], fresh: set[str]) -> list[Event]:
    """The events not applied before, in order, each once even if the batch repeats it."""
    chosen = []
    for event in events:
        if event.id in fresh:
            fresh.discard(event.id)
            chosen.append(event)
    return chosen
