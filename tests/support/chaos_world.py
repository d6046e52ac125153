"""What the process-level fault tests share: the environment simfleet processes run with, a
reseller whose endpoint is the test's receiver, and the counts taken afterwards (webhooks per
message and webhook-id, dead letters)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer

from infra.kafka_address import servers
from producers.reseller_commands import ResellerCommands
from sandbox.reseller import ReceiverState
from tests.support.eventually import eventually

INSERT_SIM = "INSERT INTO sims (iccid, status, current_number) VALUES ($1, 'active', $2)"


def environment(
    *,
    state_dir: Path,
    bootstrap: str,
    database_url: str,
    topic_prefix: str,
    gateway_secret: str,
    sealing_key: str,
    bridge_port: int,
    **extra: str,
) -> dict[str, str]:
    """The environment of ``simfleet`` processes of one test; ``extra`` adds or overrides."""
    return {
        **os.environ,
        "SIMFLEET_ENV": "test",
        "SIMFLEET_STATE_DIR": str(state_dir),
        "SIMFLEET_LOG_FORMAT": "json",
        "SIMFLEET_BRIDGE_PORT": str(bridge_port),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "TOPIC_PREFIX": topic_prefix,
        "KAFKA_SESSION_TIMEOUT_MS": "4000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "800",
        "GATEWAY_SECRET": gateway_secret,
        "WEBHOOK_SEALING_KEY": sealing_key,
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_ALLOW_HTTP": "true",
        # a dead worker's leased deliveries are taken over within seconds, not the default 20 s
        "WEBHOOK_LEASE_MARGIN_S": "3",
        "WEBHOOK_SWEEP_INTERVAL_S": "1",
        **extra,
    }


async def reseller_fleet(
    pool: asyncpg.Pool,
    commands: ResellerCommands,
    receiver: ReceiverState,
    receiver_url: str,
    numbers: Mapping[str, str],
    *,
    reseller: str = "chaos",
    endpoint: str = "ep1",
) -> None:
    """Reseller ``reseller`` with one endpoint (the receiver) and the SIMs of ``numbers``
    (ICCID → number) active and assigned to it; returns once the projector shows them."""
    await commands.create_reseller(reseller, reseller.title(), "test")
    await eventually(
        lambda: pool.fetchval("SELECT 1 FROM resellers WHERE id = $1", reseller), within=60
    )
    issued = await commands.add_endpoint(
        reseller, f"{receiver_url}/hooks/{endpoint}", "test", endpoint_id=endpoint
    )
    receiver.register(endpoint, issued.secret)
    await pool.executemany(INSERT_SIM, list(numbers.items()))
    await commands.assign_sims(reseller, list(numbers), "test")
    await eventually(
        lambda: pool.fetchval(
            "SELECT count(*) FROM reseller_sims r JOIN reseller_webhooks w USING (reseller_id)"
        ),
        until=lambda n: n == len(numbers),
        within=60,
    )


def webhook_ids(receiver: ReceiverState, endpoint: str) -> dict[str, set[str | None]]:
    """Per message id the webhook-ids it arrived under (accepted deliveries only)."""
    ids: dict[str, set[str | None]] = defaultdict(set)
    for delivery in receiver.received(endpoint):
        if delivery.accepted:
            ids[delivery.payload["message_id"]].add(delivery.webhook_id)
    return ids


async def dead_letters(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds (read from the start for three seconds)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=servers(bootstrap), auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000)
        return sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
