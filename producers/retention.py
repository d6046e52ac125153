"""Retention: rows of the tables that grow, deleted once past their ``RETENTION_*`` age.

Run by the scheduler's cleanup round (every ``ROTATION_CLEANUP_INTERVAL_S``) in small batches
(``FOR UPDATE SKIP LOCKED``: no long lock, several schedulers at once are fine). What each keeps
whatever its age, because a retry, a de-duplication or a replay still needs it:

- ``webhook_claims``: open claims (``pending``, ``scheduled``: a retry is due), and any claim
  younger than ``WEBHOOK_MAX_AGE_S`` (its source event may still be redelivered);
- ``consumer_effects``: an effect without a final outcome (attempted, result unknown: the row is
  what stops a second carrier call);
- ``sim_applied_events``, ``inbound_sms``, ``helix_api_logs``: by age alone (a re-published event
  older than the setting is applied again; the sims projection's status guards still hold);
- ``event_log``: only the archive of what has a table of its own with a retention (SMS, Helix
  calls, webhook deliveries and retries, rejected pushes, reseller token uses); ``sim.lifecycle``,
  ``reseller.registry``, ``gateway.status`` and every DLQ copy are kept for good — a replay
  rebuilds SIMs, numbers, resellers and endpoints from them;
- ``operator_audit``: only the rows of reseller token uses (``use-token``), with the archive's
  age (``RETENTION_EVENT_LOG_DAYS``), so a replay rebuilds the same audit; commands are kept;
- ``sms_arrivals``: rows older than the bridge's retry window (a later push is a new SMS anyway).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import asyncpg
import structlog

from events.topics import (
    GATEWAY_REJECTED,
    HELIX_CALLS,
    RESELLER_USAGE,
    SMS_INBOUND,
    WEBHOOK_DELIVERIES,
    WEBHOOK_RETRY,
)
from infra.clock import Clock
from infra.settings import Settings

BATCH = 500
# event types whose archive copy may expire: each has a read table with a retention of its own
EXPIRING_EVENT_TYPES = sorted(
    t
    for topic in (
        SMS_INBOUND,
        HELIX_CALLS,
        WEBHOOK_DELIVERIES,
        WEBHOOK_RETRY,
        GATEWAY_REJECTED,
        RESELLER_USAGE,
    )
    for t in topic.types
)
DELETE = {
    "webhook_claims": """
DELETE FROM webhook_claims WHERE (message_id, endpoint_id) IN (
    SELECT message_id, endpoint_id FROM webhook_claims
    WHERE state IN ('delivered', 'failed', 'skipped') AND updated_at < $1
    LIMIT $2 FOR UPDATE SKIP LOCKED)
""",
    "consumer_effects": """
DELETE FROM consumer_effects WHERE (consumer, event_id) IN (
    SELECT consumer, event_id FROM consumer_effects
    WHERE outcome IS NOT NULL AND done_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
""",
    "sim_applied_events": """
DELETE FROM sim_applied_events WHERE event_id IN (
    SELECT event_id FROM sim_applied_events WHERE applied_at < $1
    LIMIT $2 FOR UPDATE SKIP LOCKED)
""",
    "inbound_sms": """
DELETE FROM inbound_sms WHERE id IN (
    SELECT id FROM inbound_sms WHERE received_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
""",
    "helix_api_logs": """
DELETE FROM helix_api_logs WHERE call_id IN (
    SELECT call_id FROM helix_api_logs WHERE called_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
""",
    "event_log": """
DELETE FROM event_log WHERE id IN (
    SELECT id FROM event_log
    WHERE time < $1 AND type = ANY($3::text[]) AND topic NOT LIKE '%.dlq'
    LIMIT $2 FOR UPDATE SKIP LOCKED)
""",
    # a use row's command id is "<event id>#<n>": its one counted event is found by primary key
    "operator_audit": """
WITH gone AS (
    DELETE FROM operator_audit WHERE (command_id, action) IN (
        SELECT command_id, action FROM operator_audit
        WHERE action = 'use-token' AND requested_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING command_id)
DELETE FROM operator_audit_events WHERE (event_id, command_id) IN (
    SELECT split_part(command_id, '#', 1), command_id FROM gone)
""",
    "sms_arrivals": """
DELETE FROM sms_arrivals WHERE fingerprint IN (
    SELECT fingerprint FROM sms_arrivals WHERE received_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
""",
}
log = structlog.get_logger("simfleet.retention")


def cutoffs(settings: Settings, now: datetime) -> dict[str, datetime]:
    """Per table, the age before which rows may go."""
    r = settings.retention

    def days(n: int) -> datetime:
        return now - timedelta(days=n)

    return {
        # never a claim whose source event may still come again (redelivery within max age)
        "webhook_claims": min(
            days(r.webhook_claims_days), now - timedelta(seconds=settings.webhooks.max_age_s)
        ),
        "consumer_effects": days(r.consumer_effects_days),
        "sim_applied_events": days(r.sim_applied_events_days),
        "inbound_sms": days(r.inbound_sms_days),
        "helix_api_logs": days(r.helix_api_logs_days),
        "event_log": days(r.event_log_days),
        "operator_audit": days(r.event_log_days),
        "sms_arrivals": now - timedelta(seconds=settings.bridge_retry_window_s),
    }


async def clean_up(pool: asyncpg.Pool, clock: Clock, settings: Settings) -> dict[str, int]:
    """Deletes what is past retention, table by table, in batches; rows deleted per table."""
    deleted: dict[str, int] = {}
    for table, cutoff in cutoffs(settings, clock.now()).items():
        deleted[table] = 0
        while True:
            extra = (EXPIRING_EVENT_TYPES,) if table == "event_log" else ()
            status = await pool.execute(DELETE[table], cutoff, BATCH, *extra)
            count = int(status.split()[-1])
            deleted[table] += count
            if count < BATCH:
                break
            await asyncio.sleep(0)  # other work between batches
    if any(deleted.values()):
        log.info("retention_cleanup_done", **{t: n for t, n in deleted.items() if n})
    return deleted
