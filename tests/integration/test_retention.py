"""Retention on real Postgres: each table that grows loses what is past its ``RETENTION_*`` age,
and keeps what a retry, a de-duplication or a replay still needs, whatever its age."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from infra.bus import Bus
from infra.kafka import build_broker
from infra.settings import RetentionSettings, Settings
from producers import retention
from producers.scheduler import Scheduler
from tests.support.clock import ControlledClock

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CLOCK = ControlledClock(NOW)
OLD = NOW - timedelta(days=400)  # past every default
RECENT = NOW - timedelta(days=1)


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


async def keys(pool: asyncpg.Pool, sql: str) -> set[str]:
    return {r[0] for r in await pool.fetch(sql)}


async def test_finished_webhook_claims_go_open_ones_stay(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    rows = [
        ("delivered-old", "delivered", days_ago(31)),
        ("failed-old", "failed", days_ago(31)),
        ("skipped-old", "skipped", days_ago(31)),
        ("pending-old", "pending", OLD),  # a retry is due: never removed
        ("scheduled-old", "scheduled", OLD),
        ("delivered-recent", "delivered", days_ago(29)),
    ]
    await pool.executemany(
        "INSERT INTO webhook_claims (message_id, endpoint_id, reseller_id, event_type,"
        " correlationid, body, state, lease_until, started_at, updated_at)"
        " VALUES ($1, 'ep', 'acme', 'sms.received', $1, '{}', $2, $3, $3, $3)",
        rows,
    )

    deleted = await retention.clean_up(pool, CLOCK, settings)

    assert deleted["webhook_claims"] == 3
    assert await keys(pool, "SELECT message_id FROM webhook_claims") == {
        "pending-old", "scheduled-old", "delivered-recent",
    }  # fmt: skip


async def test_a_claim_is_kept_while_its_event_may_still_be_redelivered(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    short = settings.model_copy(
        update={
            "retention": RetentionSettings(webhook_claims_days=1),
            "webhooks": settings.webhooks.model_copy(update={"max_age_s": 3 * 86400.0}),
        }
    )
    await pool.execute(
        "INSERT INTO webhook_claims (message_id, endpoint_id, reseller_id, event_type,"
        " correlationid, body, state, lease_until, started_at, updated_at)"
        " VALUES ('m', 'ep', 'acme', 'sms.received', 'm', '{}', 'delivered', $1, $1, $1)",
        days_ago(2),
    )
    assert (await retention.clean_up(pool, CLOCK, short))["webhook_claims"] == 0


async def test_effects_with_an_outcome_go_those_without_stay(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    outcome = json.dumps({"type": "sim.activated"})
    await pool.executemany(
        "INSERT INTO consumer_effects (consumer, event_id, outcome, done_at, started_at)"
        " VALUES ('activation', $1, $2::jsonb, $3, $4)",
        [
            ("done-old", outcome, days_ago(91), days_ago(91)),
            ("done-recent", outcome, days_ago(89), days_ago(89)),
            # attempted, outcome unknown: this row is what stops a second carrier call
            ("unknown-old", None, None, OLD),
        ],
    )

    deleted = await retention.clean_up(pool, CLOCK, settings)

    assert deleted["consumer_effects"] == 1
    assert await keys(pool, "SELECT event_id FROM consumer_effects") == {
        "done-recent", "unknown-old",
    }  # fmt: skip


async def test_applied_event_ids_go_by_age(pool: asyncpg.Pool, settings: Settings) -> None:
    await pool.executemany(
        "INSERT INTO sim_applied_events (event_id, applied_at) VALUES ($1, $2)",
        [("old", days_ago(91)), ("recent", days_ago(89))],
    )
    deleted = await retention.clean_up(pool, CLOCK, settings)
    assert deleted["sim_applied_events"] == 1
    assert await keys(pool, "SELECT event_id FROM sim_applied_events") == {"recent"}


async def test_received_sms_go_by_age(pool: asyncpg.Pool, settings: Settings) -> None:
    await pool.executemany(
        "INSERT INTO inbound_sms (message_id, received_at, gateway_id, sender, body)"
        " VALUES ($1, $2, 'gw', '+15551230000', 'hi')",
        [("old", days_ago(91)), ("recent", days_ago(89))],
    )
    deleted = await retention.clean_up(pool, CLOCK, settings)
    assert deleted["inbound_sms"] == 1
    assert await keys(pool, "SELECT message_id FROM inbound_sms") == {"recent"}


async def test_helix_calls_go_by_age(pool: asyncpg.Pool, settings: Settings) -> None:
    await pool.executemany(
        "INSERT INTO helix_api_logs (call_id, operation, method, url, ok, duration_ms, called_at)"
        " VALUES ($1, 'subscriber_details', 'POST', '/x', true, 1.0, $2)",
        [("old", days_ago(91)), ("recent", days_ago(89))],
    )
    deleted = await retention.clean_up(pool, CLOCK, settings)
    assert deleted["helix_api_logs"] == 1
    assert await keys(pool, "SELECT call_id FROM helix_api_logs") == {"recent"}


async def test_the_archive_keeps_what_a_replay_needs(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    rows = [
        ("sms-old", "sms.inbound", "sms.received", OLD),
        ("helix-old", "helix.calls", "helix.api_called", OLD),
        ("delivery-old", "webhook.deliveries", "webhook.delivery_succeeded", OLD),
        ("sms-recent", "sms.inbound", "sms.received", days_ago(364)),
        # the replay source of SIMs, numbers, resellers, endpoints and ports: kept for good
        ("activated-old", "sim.lifecycle", "sim.activated", OLD),
        ("reseller-old", "reseller.registry", "reseller.created", OLD),
        ("status-old", "gateway.status", "gateway.status_reported", OLD),
        ("dead-sms-old", "sms.inbound.dlq", "sms.received", OLD),  # parked: the operator's
    ]
    await pool.executemany(
        'INSERT INTO event_log (id, topic, partition, "offset", type, key, subject,'
        " correlationid, time, payload) VALUES ($1, $2, 0, 0, $3, 'k', 'k', $1, $4, '{}')",
        rows,
    )

    deleted = await retention.clean_up(pool, CLOCK, settings)

    assert deleted["event_log"] == 3
    assert await keys(pool, "SELECT id FROM event_log") == {
        "sms-recent", "activated-old", "reseller-old", "status-old", "dead-sms-old",
    }  # fmt: skip


async def test_first_arrivals_go_after_the_retry_window(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    window = timedelta(seconds=settings.bridge_retry_window_s)
    await pool.executemany(
        "INSERT INTO sms_arrivals (fingerprint, received_at) VALUES ($1, $2)",
        [("old", NOW - window - timedelta(seconds=1)), ("recent", NOW - window / 2)],
    )
    deleted = await retention.clean_up(pool, CLOCK, settings)
    assert deleted["sms_arrivals"] == 1
    assert await keys(pool, "SELECT fingerprint FROM sms_arrivals") == {"recent"}


async def test_the_schedulers_cleanup_round_runs_retention(
    pool: asyncpg.Pool, settings: Settings, kafka_bootstrap: str
) -> None:
    await pool.execute(
        "INSERT INTO inbound_sms (message_id, received_at, gateway_id, sender, body)"
        " VALUES ('old', $1, 'gw', '+15551230000', 'hi')",
        OLD,
    )
    bus = Bus(build_broker(settings.kafka, kafka_bootstrap), settings.kafka.topic_prefix)
    assert await Scheduler(pool, bus, CLOCK, settings).clean_up() >= 1
    assert await pool.fetchval("SELECT count(*) FROM inbound_sms") == 0


async def test_token_uses_leave_the_audit_with_their_archive_commands_stay(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    rows = [
        ("reseller.token_used_old#0", "use-token", "reseller:acme/ops", OLD),
        ("reseller.token_used_old#1", "use-token", "reseller:acme/ops", OLD),
        ("reseller.token_used_new#0", "use-token", "reseller:acme/ops", RECENT),
        ("click-old", "cancel", "dashboard:alice", OLD),  # an operator's command: kept for good
        ("rotate-old", "rotate-secret", "reseller:acme/ops", OLD),  # a reseller's change: kept
    ]
    await pool.executemany(
        "INSERT INTO operator_audit (command_id, action, actor, channel, requested_at, subjects,"
        " events) VALUES ($1, $2, $3, split_part($3, ':', 1), $4, ARRAY['acme'], 1)",
        rows,
    )
    await pool.executemany(
        "INSERT INTO operator_audit_events (event_id, command_id) VALUES ($1, $2)",
        [(command_id.partition("#")[0], command_id) for command_id, *_ in rows],
    )

    deleted = await retention.clean_up(pool, CLOCK, settings)

    assert deleted["operator_audit"] == 2
    kept = {"reseller.token_used_new#0", "click-old", "rotate-old"}
    assert await keys(pool, "SELECT command_id FROM operator_audit") == kept
    assert await keys(pool, "SELECT command_id FROM operator_audit_events") == kept
