"""The scheduler's sweeps on a real broker and Postgres: timeouts emitted once each across a
restart and with two schedulers at once; retention in batches; resync of a reseller."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from consumers.verification import consumer as verification
from events import decode
from events.sim import NumberOnline, NumberVerificationFailed, VerificationSent
from events.topics import SIM_LIFECYCLE
from infra.bus import Bus
from infra.clock import SystemClock
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import Settings, VerificationSettings
from producers.resync import reseller_id_for, resync_reseller
from producers.scheduler import CLEANUP_BATCH, Scheduler
from tests.support.eventually import eventually
from tests.support.fleet import read_topic
from tests.support.number_world import running_numbers

pytestmark = pytest.mark.integration


async def test_each_timeout_is_emitted_once_across_a_restart_and_two_schedulers(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> None:
    no_retry = VerificationSettings(retries=0)
    async with running_numbers(
        settings, kafka_bootstrap, database_url, flows=(verification,), verification_config=no_retry
    ) as w:
        sender = await w.add_sim(7901)
        sims = [await w.add_sim(7902 + i, verified=False) for i in range(6)]
        past = w.clock.now() - timedelta(minutes=5)

        def expired(i: int) -> VerificationSent:
            return VerificationSent.create(
                producer="simfleet/verification", time=past, iccid=sims[i].iccid,
                request_id=f"old:{i}", number=sims[i].number, code=f"EXP{i:03d}",
                sender_iccid=sender.iccid, sender_port=sender.port, sent_at=past,
                expires_at=past + timedelta(minutes=2),
            )  # fmt: skip

        async def pending() -> int:
            return int(
                await w.pool.fetchval("SELECT count(*) FROM verifications WHERE state = 'sent'")
            )

        await w.emit(*(expired(i) for i in range(3)))
        await eventually(pending, until=lambda n: n == 3)
        first = await w.verification_sweeps()
        assert await first.expire_verifications() == 3
        restarted = await w.verification_sweeps()  # a new process: the state is in Postgres
        assert await restarted.expire_verifications() == 0

        await w.emit(*(expired(i) for i in range(3, 6)))
        await eventually(pending, until=lambda n: n == 3)
        one, two = await w.verification_sweeps(), await w.verification_sweeps()
        rounds = await asyncio.gather(*(s.expire_verifications() for s in (one, two, one, two)))
        assert sum(rounds) == 3

        failures = await w.events(NumberVerificationFailed)  # emitted before the sweeps returned
        assert len(failures) == 6  # records on the topic: not one duplicate
        assert Counter(f.data.iccid for f in failures) == Counter(s.iccid for s in sims)
        assert {f.data.reason for f in failures} == {"timeout"}
        assert await pending() == 0


@contextlib.asynccontextmanager
async def scheduler_on(settings: Settings, bootstrap: str, dsn: str) -> AsyncIterator[Scheduler]:
    pool = await create_pool(dsn, min_size=1, max_size=4)
    broker = build_broker(settings.kafka, bootstrap)
    try:
        async with broker:
            await broker.start()
            yield Scheduler(pool, Bus(broker, settings.kafka.topic_prefix), SystemClock(), settings)
    finally:
        await pool.close()


async def test_deliveries_past_retention_are_deleted_in_batches(
    settings: Settings, kafka_bootstrap: str, database_url: str
) -> None:
    async with scheduler_on(settings, kafka_bootstrap, database_url) as scheduler:
        now = datetime.now(UTC)
        old = now - timedelta(days=settings.webhooks.retention_days, hours=1)
        ages = [old] * (2 * CLEANUP_BATCH + 7) + [now - timedelta(days=1)] * 5
        await scheduler.pool.executemany(
            "INSERT INTO webhook_deliveries (message_id, endpoint, reseller_id, event_type, "
            "status, created_at) VALUES ($1, 'ep', 'acme', 'sms.received', 'delivered', $2)",
            [(f"m{i}", at) for i, at in enumerate(ages)],
        )
        assert await scheduler.clean_up() == 2 * CLEANUP_BATCH + 7
        left = await scheduler.pool.fetch("SELECT created_at FROM webhook_deliveries")
        assert len(left) == 5
        assert await scheduler.clean_up() == 0


async def test_a_resync_sends_number_online_again_for_every_online_number_of_the_reseller(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> None:
    async with scheduler_on(settings, kafka_bootstrap, database_url) as scheduler:
        pool, bus = scheduler.pool, scheduler.bus
        await pool.execute(
            "INSERT INTO resellers (id, name, created_at) VALUES ('acme', 'Acme Mobile', now())"
        )
        rows = [
            ("89012608800000000011", "+16465550011", "acme", "verified", "active"),
            ("89012608800000000029", "+16465550029", "acme", "verified", "active"),
            ("89012608800000000037", "+16465550037", "acme", "failed", "active"),  # not online
            ("89012608800000000045", "+16465550045", "other", "verified", "active"),
            ("89012608800000000052", "+16465550052", None, "verified", "active"),
        ]
        await pool.executemany(
            "INSERT INTO sims (iccid, current_number, reseller_id, number_status, status, "
            "mobility_subscription_id) VALUES ($1, $2, $3, $4, $5, '38100')",
            rows,
        )
        # the operator's assignment wins over the SIM row, as the webhook flow resolves it
        await pool.execute(
            "INSERT INTO reseller_sims (iccid, reseller_id, assigned_at) "
            "VALUES ('89012608800000000052', 'acme', now())"
        )
        assert await reseller_id_for(pool, "Acme Mobile") == "acme"
        assert await reseller_id_for(pool, "nobody") is None

        assert await resync_reseller(pool, bus, SystemClock(), "acme") == 3
        assert await resync_reseller(pool, bus, SystemClock(), "acme") == 3
        records = await read_topic(kafka_bootstrap, settings, SIM_LIFECYCLE)
        events = [e for e in (decode(r.value) for r in records) if isinstance(e, NumberOnline)]
        assert len({e.id for e in events}) == 6  # every resync is a new delivery
        assert {e.data.iccid for e in events} == {rows[0][0], rows[1][0], rows[4][0]}
        assert all(e.data.online_until and e.data.online_until > e.time for e in events)
        assert len({e.data.request_id for e in events}) == 2
