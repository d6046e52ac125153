"""A small fleet written straight into the read tables, as the projections would have left it.

Used by the dashboard's integration and browser tests. ``FEATURED`` is the SIM with a history:
two numbers, SMS reaching it three ways (its number, its old number in that number's window,
its gateway port) plus one tagged with its ICCID, Helix calls, a timeline with a correlated
webhook delivery. ``FILLER`` SIMs make the table long enough to paginate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from events.envelope import Event
from events.sim import (
    NumberAssigned,
    NumberOnline,
    SimActivated,
    SimActivationRequested,
    SyncRequested,
    VerificationSent,
)
from events.webhook import WebhookDeliverySucceeded

FEATURED = "8901260000000000017"
PENDING = "8901260000000000025"
PROVISIONING = "8901260000000000033"
SUSPENDED = "8901260000000000041"
CANCELLED = "8901260000000000058"
FAILED_VERIFY = "8901260000000000066"
FILLER_COUNT = 130
NUMBER = "+15550100001"
OLD_NUMBER = "+15550109999"
IMEI = "356938035643809"
SEALED_SECRET = "gAAAAABsealed-endpoint-secret-never-shown"
URL_TOKEN = "url-token-7c1e9d"
HELIX_PASSWORD = "hx-grant-password-Q8z!"
ENDPOINT = "ep-acme-1"
IMPORTER = "cli:importer"  # the actor of the featured SIM's activation request


def filler_iccid(n: int) -> str:
    return f"89012609{n:011d}"


FILLERS = tuple(filler_iccid(n) for n in range(FILLER_COUNT))
ALL_ICCIDS = (FEATURED, PENDING, PROVISIONING, SUSPENDED, CANCELLED, FAILED_VERIFY, *FILLERS)


@dataclass(frozen=True)
class World:
    now: datetime
    all_iccids: tuple[str, ...]
    online_correlation: str


INSERT_SIM = """
INSERT INTO sims (iccid, imei, status, mobility_subscription_id, current_number, number_status,
                  reseller_id, gateway_id, port, activated_at, last_rotated_at,
                  next_rotation_due_at, rotation_count, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
"""
INSERT_NUMBER = """
INSERT INTO sim_numbers (assignment_id, iccid, e164, source, valid_from, valid_to,
                         verification_status, verification_code, verified_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
INSERT_SMS = """
INSERT INTO inbound_sms (message_id, received_at, gateway_id, port, sender, to_number, iccid, body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
INSERT_DELIVERY = """
INSERT INTO webhook_deliveries (message_id, endpoint, reseller_id, event_type, status, attempts,
                                last_status_code, last_error, last_latency_ms, next_attempt_at,
                                delivered_at, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
INSERT_HELIX = """
INSERT INTO helix_api_logs (call_id, operation, iccid, method, url, status_code, ok, duration_ms,
                            request_body, response_body, error, called_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
INSERT_AUDIT = """
INSERT INTO operator_audit (command_id, action, actor, channel, requested_at, reason, target,
                            subjects, events)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
INSERT_EVENT = """
INSERT INTO event_log (id, topic, partition, "offset", type, key, subject, correlationid, time,
                       payload)
VALUES ($1, $2, 0, $3, $4, $5, $5, $6, $7, $8)
"""


async def seed(conn: asyncpg.Connection, now: datetime) -> World:
    day, hour = timedelta(days=1), timedelta(hours=1)
    await conn.execute(
        "INSERT INTO resellers (id, name, created_at) VALUES "
        "('acme', 'Acme Mobile', $1), ('globex', 'Globex', $1)",
        now - 30 * day,
    )
    await conn.execute(
        "INSERT INTO reseller_webhooks (endpoint_id, reseller_id, url, sealed_secret, "
        "event_types, created_at) VALUES ($1, 'acme', $2, $3, '{sms.received}', $4)",
        ENDPOINT,
        f"https://hooks.acme.example/simfleet?token={URL_TOKEN}",
        SEALED_SECRET,
        now - 30 * day,
    )
    sims: list[tuple[Any, ...]] = [
        # iccid, imei, status, sub, number, number status, reseller, gateway, port,
        # activated, last rotated, next due, rotations, created
        (FEATURED, IMEI, "active", "SUB-0001", NUMBER, "verified", "acme", "gw-1", "1.01",
         now - 3 * day, now - day, now - hour, 3, now - 4 * day),
        (PENDING, IMEI, "pending", None, None, None, "acme", None, None,
         None, None, None, 0, now - 2 * day),
        (PROVISIONING, IMEI, "provisioning", "SUB-0003", None, None, "globex", None, None,
         now - hour, None, None, 0, now - 2 * day),
        (SUSPENDED, IMEI, "suspended", "SUB-0004", "+15550100004", "verified", "globex", None,
         None, now - 5 * day, None, None, 0, now - 6 * day),
        (CANCELLED, IMEI, "cancelled", "SUB-0005", None, None, None, None, None,
         now - 9 * day, None, None, 0, now - 10 * day),
        (FAILED_VERIFY, IMEI, "active", "SUB-0006", "+15550100006", "failed", "acme", None,
         None, now - day, now - hour, now + day, 1, now - 2 * day),
    ]  # fmt: skip
    sims += [
        (filler_iccid(n), IMEI, "active", f"SUB-F{n}", f"+1555020{n:04d}", "verified",
         "globex" if n % 2 else "acme", None, None, now - day, now - hour, now + day, 1, now - day)
        for n in range(FILLER_COUNT)
    ]  # fmt: skip
    await conn.executemany(INSERT_SIM, sims)
    # silent: the featured SIM counts; a suspended one announced silent before does not
    await conn.execute(
        "UPDATE sims SET inbound_silent_since = $1 WHERE iccid = ANY($2::text[])",
        now - 7 * hour,
        [FEATURED, SUSPENDED],
    )
    await conn.executemany(
        "INSERT INTO reseller_sims (iccid, reseller_id, assigned_at) VALUES ($1, $2, $3)",
        [(s[0], s[6], now - day) for s in sims if s[6]],
    )
    await conn.executemany(
        INSERT_NUMBER,
        [
            ("a-old", FEATURED, OLD_NUMBER, "activation", now - 3 * day, now - day,
             "verified", "OLD123", now - 3 * day),
            ("a-new", FEATURED, NUMBER, "rotation", now - day, None,
             "verified", "ABC123", now - day),
        ],
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO gateways (gateway_id, name) VALUES ('gw-1', 'rack 1'), ('gw-2', 'rack 2')"
    )
    await conn.execute(
        "INSERT INTO gateway_ports (gateway_id, port, status_code, iccid, number, updated_at) "
        "VALUES ('gw-1', '1.01', 0, $1, $2, $3)",
        FEATURED,
        NUMBER,
        now,
    )
    await conn.executemany(
        INSERT_SMS,
        [
            ("m-number", now - hour, "gw-2", "9.09", "+15557770000", NUMBER, None,
             "VERIFY ABC123"),
            ("m-old-number", now - 2 * day, "gw-2", "9.09", "+15557770001", OLD_NUMBER, None,
             "your code is 4411"),
            ("m-port", now - 2 * hour, "gw-1", "1.01", "Google", None, None,
             "G-666266 is your Google verification code"),
            ("m-iccid", now - 3 * hour, "gw-2", "9.09", "22395", None, FEATURED,
             "tagged by the gateway"),
            ("m-stray", now - hour, "gw-2", "9.09", "+15557770002", OLD_NUMBER, None,
             "to a number nobody holds now"),
        ],
    )  # fmt: skip
    await conn.executemany(
        INSERT_DELIVERY,
        [
            ("msg-delivered", ENDPOINT, "acme", "sms.received", "delivered", 1, 200, None,
             41.0, None, now - hour, now - hour),
            ("msg-failed", ENDPOINT, "acme", "number.online", "failed", 5, 500,
             "HTTP 500 from endpoint", 120.0, None, None, now - hour),
            ("msg-retrying", ENDPOINT, "acme", "sms.received", "retrying", 2, None,
             "timeout after 10s", None, now + hour, None, now - hour),
        ],
    )  # fmt: skip
    await conn.executemany(
        INSERT_HELIX,
        [
            ("call-1", "activate", FEATURED, "POST", "https://helix.example/activate", 200,
             True, 812.0, {"iccid": FEATURED, "imei": IMEI}, {"mobilitySubscriptionId": "SUB-0001"},
             None, now - 3 * day),
            ("call-2", "subscriber_details", FEATURED, "GET",
             "https://helix.example/subscribers/SUB-0001", 503, False, 30012.5,
             {"password": HELIX_PASSWORD}, None, "HTTP 503 Service Unavailable", now - hour),
        ],
    )  # fmt: skip
    await conn.executemany(
        'INSERT INTO projection_checkpoints (projection, topic, partition, "offset", updated_at) '
        "VALUES ('inbound_sms', 'sms.inbound', $1, $2, $3)",
        [(0, 41, now - hour), (1, 9, now)],
    )
    await conn.executemany(
        INSERT_AUDIT,
        [
            ("import:x", "import", IMPORTER, "cli", now - 3 * day, None, None,
             sorted([FEATURED, PENDING]), 3),
            ("click-1", "cancel", "dashboard:operator", "dashboard", now - 9 * day,
             "returned by the customer", None, [CANCELLED], 1),
            ("run-1", "rotate", "run:ADMIN_RUN_SECRET", "run", now - hour, None, None,
             list(FILLERS[:60]), 60),
            ("ep-1", "remove-endpoint", "api:operator", "api", now - 2 * hour,
             "endpoint retired", "ep-acme-0", ["acme"], 1),
        ],
    )  # fmt: skip
    correlation = await _seed_timeline(conn, now)
    return World(now, tuple(s[0] for s in sims), correlation)


async def _seed_timeline(conn: asyncpg.Connection, now: datetime) -> str:
    at = now - 3 * timedelta(days=1)
    requested = SimActivationRequested.create(
        producer="simfleet/bulk_import",
        time=at,
        iccid=FEATURED,
        imei=IMEI,
        ref="import:x",
        requested_by=IMPORTER,
    )
    activated = SimActivated.of(
        requested,
        producer="simfleet/activation",
        time=at + timedelta(seconds=4),
        iccid=FEATURED,
        request_id=requested.id,
        mobility_subscription_id="SUB-0001",
    )
    common = {"iccid": FEATURED, "request_id": activated.id, "number": OLD_NUMBER}
    assigned = NumberAssigned.of(
        activated,
        producer="simfleet/finalizer",
        time=at + timedelta(seconds=9),
        source="activation",
        **common,
    )
    sent = VerificationSent.of(
        assigned,
        producer="simfleet/verification",
        time=at + timedelta(seconds=10),
        code="OLD123",
        sender_iccid=filler_iccid(1),
        sent_at=at,
        expires_at=at + timedelta(minutes=2),
        **common,
    )
    online = NumberOnline.of(
        sent, producer="simfleet/verification", time=at + timedelta(seconds=41), **common
    )
    delivered = WebhookDeliverySucceeded.of(
        online,
        producer="simfleet/webhooks",
        time=at + timedelta(seconds=42),
        message_id=online.id,
        endpoint_id=ENDPOINT,
        reseller_id="acme",
        event_type="number.online",
        attempt=1,
        status_code=200,
        attempted_at=at,
    )
    # another SIM's lifecycle event sharing the correlation id must stay off the timeline
    other = SyncRequested.of(
        online, producer="simfleet/scheduler", time=at, iccid=filler_iccid(2), ref="tick"
    )
    events: list[Event] = [requested, activated, assigned, sent, online, delivered, other]
    await conn.executemany(
        INSERT_EVENT,
        [
            (e.id, "sim.lifecycle", n, e.type, e.subject, e.correlationid, e.time,
             e.model_dump(mode="json"))
            for n, e in enumerate(events)
        ],
    )  # fmt: skip
    return online.correlationid
