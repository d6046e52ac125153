"""``make chaos``: 20,000 SMS through the bridge while the consumer processes are SIGKILLed and
restarted again and again; afterwards every SMS is in ``inbound_sms`` exactly once and every
webhook was received at least once, duplicates only as redeliveries of the same ``webhook-id``.

Processes as an operator runs them, against the session's broker and Postgres: ``simfleet
bridge`` (never killed: it is the gateways' side), ``simfleet projector`` (inbound_sms and the
other read tables), ``simfleet workers webhooks`` and ``simfleet workers verification silence
endpoint_health`` (the other consumers of this traffic: verification replies, last-SMS times,
endpoint health), the three victims. The reseller's endpoint is
the sandbox receiver in this process, checking every signature. Pushes are paced (~300 SMS/s),
so the kills land while records are in flight: a projector dies mid-batch (its transaction
rolled back, its Kafka offsets uncommitted), a webhook worker dies holding leased deliveries
(taken over by the next one's sweeper once the lease lapses).
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from events.topics import SMS_INBOUND
from infra.bus import Bus
from infra.clock import SystemClock
from infra.http import free_port, serve_http
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import Settings, WebhookSettings
from infra.webhook_signing import SecretBox
from producers.reseller_commands import ResellerCommands
from sandbox.helix_world import make_iccid
from sandbox.reseller import create_reseller_receiver
from tests.support.chaos_world import dead_letters, environment, reseller_fleet, webhook_ids
from tests.support.eventually import eventually
from tests.support.processes import SimfleetProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMS_TOTAL = 20_000
PER_PUSH = 25
PUSH_RATE = 300.0  # SMS/s: about a minute of pushing, so the kills land mid-stream
PUSHERS = 6
SIMS = 100
KILLS_EACH = 4  # at least, per victim
SECRET = "chaos-gateway-secret-71c"


def number(n: int) -> str:
    return f"+1646555{n:04d}"


async def push_all(bridge_url: str) -> set[str]:
    """SMS_TOTAL distinct SMS in pushes of PER_PUSH, paced at PUSH_RATE; a 503 is retried as a
    gateway would. Returns the ids the bridge acknowledged."""
    acknowledged: set[str] = set()
    chunks = [
        [
            {"to": number(i % SIMS), "from": "+15551230000", "body": f"chaos sms {i}",
             "gateway_id": "gw-chaos", "port": "1.01",
             "received_at": datetime(2026, 1, 1, tzinfo=UTC).isoformat()}
            for i in range(start, min(start + PER_PUSH, SMS_TOTAL))
        ]
        for start in range(0, SMS_TOTAL, PER_PUSH)
    ]  # fmt: skip
    queue = list(enumerate(chunks))
    queue.reverse()
    began = time.monotonic()

    async def pusher(http: httpx.AsyncClient) -> None:
        while queue:
            n, chunk = queue.pop()
            await asyncio.sleep(max(0.0, began + n * PER_PUSH / PUSH_RATE - time.monotonic()))
            while True:
                answer = await http.post(
                    "/sms/simple", json=chunk, headers={"x-gateway-secret": SECRET}
                )
                if answer.status_code == 200:
                    acknowledged.update(answer.json()["ids"])
                    break
                assert answer.status_code == 503, answer.text
                await asyncio.sleep(0.5)

    async with httpx.AsyncClient(base_url=bridge_url, timeout=60) as http:
        await asyncio.gather(*(pusher(http) for _ in range(PUSHERS)))
    return acknowledged


async def keep_killing(victims: list[SimfleetProcess], pushed: asyncio.Event) -> None:
    """SIGKILL each victim a few seconds after it came up, restart it; again and again until
    the pushes are done and each died at least KILLS_EACH times."""
    dice = random.Random(7)  # noqa: S311 - timing dice, not cryptography
    while not (pushed.is_set() and all(v.kills >= KILLS_EACH for v in victims)):
        for victim in victims:
            await asyncio.sleep(dice.uniform(1.0, 4.0))
            await victim.sigkill()
            await victim.start()


@pytest.mark.timeout(1800)
async def test_sigkilled_consumers_lose_nothing_and_deliver_every_webhook(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str], tmp_path: Path
) -> None:
    sealing_key = Fernet.generate_key().decode()
    bridge_port = free_port()
    env = environment(
        state_dir=settings.state_dir,
        bootstrap=kafka_bootstrap,
        database_url=database_url,
        topic_prefix=settings.kafka.topic_prefix,
        gateway_secret=SECRET,
        sealing_key=sealing_key,
        bridge_port=bridge_port,
    )
    projector = SimfleetProcess(["projector"], env, tmp_path / "projector.log")
    webhooks = SimfleetProcess(["workers", "webhooks"], env, tmp_path / "webhooks.log")
    others = SimfleetProcess(
        ["workers", "verification", "silence", "endpoint_health"], env, tmp_path / "others.log"
    )
    bridge = SimfleetProcess(["bridge"], env, tmp_path / "bridge.log")
    receiver_app, receiver = create_reseller_receiver()
    pool = await create_pool(database_url, min_size=1, max_size=4)
    broker = build_broker(settings.kafka, kafka_bootstrap)
    await broker.start()
    commands = ResellerCommands(
        bus=Bus(broker, settings.kafka.topic_prefix),
        pool=pool,
        box=SecretBox([sealing_key.encode()]),
        settings=WebhookSettings(allow_http=True, allow_private=True),
        clock=SystemClock(),
    )
    try:
        async with serve_http(receiver_app) as receiver_url:
            await projector.start()
            numbers = {make_iccid(n): number(n) for n in range(SIMS)}
            await reseller_fleet(pool, commands, receiver, receiver_url, numbers)
            await webhooks.start()
            await others.start()
            await bridge.start()

            pushed = asyncio.Event()
            chaos = asyncio.create_task(keep_killing([projector, webhooks, others], pushed))
            acknowledged = await push_all(f"http://127.0.0.1:{bridge_port}")
            pushed.set()
            while_pushing = (projector.kills, webhooks.kills, others.kills)
            await chaos

            stored = await eventually(
                lambda: pool.fetchval("SELECT count(*) FROM inbound_sms"),
                until=lambda n: n >= SMS_TOTAL, within=300, interval=1,
            )  # fmt: skip

            async def delivered() -> int:
                return len(
                    {d.payload["message_id"] for d in receiver.received("ep1") if d.accepted}
                )

            await eventually(delivered, until=lambda n: n >= SMS_TOTAL, within=300, interval=1)
            rows = await pool.fetch("SELECT message_id, body FROM inbound_sms")
            dlq = await dead_letters(
                kafka_bootstrap, SMS_INBOUND.dlq.full_name(settings.kafka.topic_prefix)
            )
    finally:
        for process in (projector, webhooks, others, bridge):
            await process.stop()
        await broker.stop()
        await pool.close()

    assert min(projector.kills, webhooks.kills, others.kills) >= KILLS_EACH
    assert min(while_pushing) >= 1, f"kills while SMS were flowing: {while_pushing}"
    assert len(acknowledged) == SMS_TOTAL
    # inbound_sms: every SMS exactly once (message_id is unique; the bodies tell them apart)
    assert stored == len(rows) == SMS_TOTAL
    assert {r["message_id"] for r in rows} == acknowledged
    assert len({r["body"] for r in rows}) == SMS_TOTAL
    assert dlq == 0, "records were dead-lettered"
    # webhooks: each message at least once; a repeat only under the same webhook-id
    got = [d for d in receiver.received("ep1") if d.accepted]
    assert all(d.signature_valid for d in got)
    ids_of = webhook_ids(receiver, "ep1")
    assert set(ids_of) == acknowledged
    assert all(ids == {message_id} for message_id, ids in ids_of.items()), (
        "a message went out under another webhook-id"
    )
    print(  # noqa: T201 - the figures for docs/reliability.md
        f"\nchaos: {SMS_TOTAL} SMS, projector killed {projector.kills}x, webhook worker killed "
        f"{webhooks.kills}x, the other workers {others.kills}x; webhooks received {len(got)} (duplicates {len(got) - SMS_TOTAL})"
    )
