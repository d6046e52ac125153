"""Operational alerts on real Postgres, Kafka and an HTTP sink (the sandbox receiver): each check
opens an incident once, however often it is evaluated and by how many schedulers, sends one
alert, and one resolve message when its condition clears (the injected clock moves windows)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from pydantic import SecretStr

from alerting import checks as alert_checks
from events.topics import GATEWAY_REJECTED
from infra.http import serve_http
from infra.kafka_lag import group_lags
from infra.settings import AlertSettings, Settings
from sandbox.reseller import create_reseller_receiver
from simfleet.app import runtime
from simfleet.carrier import carrier_objects
from simfleet.endpoints import Endpoints
from simfleet.scheduling import scheduler_service
from tests.support.health_world import HealthWorld, health_world
from tests.support.webhook_world import webhook_world

pytestmark = pytest.mark.integration

WINDOW = timedelta(hours=1)


@pytest.fixture
async def hw(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[HealthWorld]:
    async with webhook_world(settings, kafka_bootstrap) as world, health_world(world) as hw:
        yield hw


async def add_verifications(hw: HealthWorld, at: datetime, *, verified: int, failed: int) -> None:
    rows = [("verified", at, None)] * verified + [("failed", None, at)] * failed
    await hw.world.pool.executemany(
        "INSERT INTO sim_numbers (assignment_id, iccid, e164, source, valid_from, "
        "verification_status, verified_at, failed_at) "
        "VALUES ($1, '8901260000000000099', '+15550000099', 'activation', $2, $3, $4, $5)",
        [(uuid.uuid4().hex, at, status, v, f) for status, v, f in rows],
    )


async def add_helix_calls(hw: HealthWorld, at: datetime, *, ok: int, failed: int) -> None:
    await hw.world.pool.executemany(
        "INSERT INTO helix_api_logs (call_id, operation, method, url, status_code, ok, "
        "duration_ms, called_at) VALUES ($1, 'activate', 'POST', '/activate', $2, $3, 5, $4)",
        [
            (uuid.uuid4().hex, 200 if good else 503, good, at)
            for good in [True] * ok + [False] * failed
        ],
    )


async def fires_once_then_resolves(
    hw: HealthWorld,
    check: alert_checks.Check,
    clear: Callable[[], Awaitable[None]],
    expected: str,
) -> None:
    """Two schedulers evaluate: one alert; more rounds: nothing; ``clear``: one resolve."""
    first, second = hw.alerts(check), hw.alerts(check)
    sent = await asyncio.gather(first.evaluate(), second.evaluate())
    assert sorted(sent) == [0, 1]
    assert await first.evaluate() == 0
    [alert] = hw.alert_texts()
    assert alert.startswith(f"[simfleet test] ALERT {check.name}: ")
    assert expected in alert
    await clear()
    assert await first.evaluate() == 1
    assert await second.evaluate() == 0
    assert await first.evaluate() == 0
    texts = hw.alert_texts()
    assert len(texts) == 2
    assert texts[1].startswith(f"[simfleet test] RESOLVED {check.name}: ")


async def test_verification_failure_rate_alert(hw: HealthWorld) -> None:
    now = hw.clock.now()
    await add_verifications(hw, now - timedelta(minutes=5), verified=6, failed=4)
    check = alert_checks.verification_failures(
        hw.world.pool, window=WINDOW, min_samples=10, threshold=0.2
    )

    async def an_hour_passes() -> None:  # the failures leave the window
        hw.clock.advance(WINDOW)

    await fires_once_then_resolves(hw, check, an_hour_passes, "40% of number verifications")


async def test_too_few_verifications_to_judge_raise_nothing(hw: HealthWorld) -> None:
    await add_verifications(hw, hw.clock.now(), verified=0, failed=3)
    check = alert_checks.verification_failures(
        hw.world.pool, window=WINDOW, min_samples=10, threshold=0.2
    )
    assert await hw.alerts(check).evaluate() == 0
    assert hw.alert_texts() == []


async def test_helix_error_rate_alert(hw: HealthWorld) -> None:
    now = hw.clock.now()
    await add_helix_calls(hw, now - timedelta(minutes=1), ok=5, failed=5)
    check = alert_checks.helix_errors(hw.world.pool, window=WINDOW, min_samples=10, threshold=0.2)

    async def the_carrier_recovers() -> None:
        await add_helix_calls(hw, hw.clock.now(), ok=90, failed=0)

    await fires_once_then_resolves(hw, check, the_carrier_recovers, "50% of Helix calls failed")


async def test_consumer_lag_alert_from_the_broker(hw: HealthWorld) -> None:
    world = hw.world
    kafka, bootstrap = world.settings.kafka, world.kafka_bootstrap
    topic = GATEWAY_REJECTED.full_name(kafka.topic_prefix)  # one partition
    group = f"{kafka.topic_prefix}laggard"
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(5):  # one by one: one record per batch
            await producer.send_and_wait(topic, f"rejected {i}".encode())
    finally:
        await producer.stop()

    async def commit(offset: int) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.commit({tp: OffsetAndMetadata(offset, "")})
        finally:
            await consumer.stop()

    await commit(0)
    lags = await group_lags(bootstrap, kafka)
    assert lags is not None
    assert lags.get(group) == 5

    async def measure(_now: datetime) -> dict[str, float] | None:
        return await group_lags(bootstrap, kafka)

    async def it_catches_up() -> None:
        await commit(5)

    check = alert_checks.consumer_lag(measure, 3)
    await fires_once_then_resolves(hw, check, it_catches_up, f"{group} is 5 records behind")


async def test_silent_sims_alert_through_a_count_function(hw: HealthWorld) -> None:
    silent = {"count": 12}

    async def count(_now: datetime) -> int | None:
        return silent["count"]

    async def traffic_resumes() -> None:
        silent["count"] = 0

    check = alert_checks.silent_sims(count, 10)
    await fires_once_then_resolves(hw, check, traffic_resumes, "12 online SIMs")


async def test_the_silent_sims_alert_counts_the_sims_announced_silent(hw: HealthWorld) -> None:
    """The count the scheduler gives the check: active SIMs marked silent in ``sims``."""
    from projections.overview_queries import silent_sim_count

    pool = hw.world.pool
    await pool.executemany(
        "INSERT INTO sims (iccid, status, inbound_silent_since) VALUES ($1, $2, $3)",
        [
            (f"890126000000000{n:04d}", status, hw.clock.now() if silent else None)
            for n, (status, silent) in enumerate(
                [("active", True)] * 3 + [("cancelled", True), ("active", False)]
            )
        ],
    )

    async def count(_now: datetime) -> int:
        return await silent_sim_count(pool)

    async def traffic_resumes() -> None:
        await pool.execute("UPDATE sims SET inbound_silent_since = NULL")

    check = alert_checks.silent_sims(count, 2)
    await fires_once_then_resolves(hw, check, traffic_resumes, "3 online SIMs")


async def test_a_sink_that_is_down_gets_the_alert_on_a_later_round(hw: HealthWorld) -> None:
    hw.world.receiver.set_mode("alerts", "fail_500")
    silent = {"count": 50}

    async def count(_now: datetime) -> int | None:
        return silent["count"]

    alerts = hw.alerts(alert_checks.silent_sims(count, 10))
    assert await alerts.evaluate() == 0
    hw.world.receiver.set_mode("alerts", "ok")
    assert await alerts.evaluate() == 1
    assert await alerts.evaluate() == 0
    accepted = [d for d in hw.world.receiver.received("alerts") if d.accepted]
    assert len(accepted) == 1


async def test_the_scheduler_component_sends_alerts_to_the_configured_sink(
    settings: Settings, database_url: str, kafka_bootstrap: str, topics: list[str]
) -> None:
    """As `simfleet scheduler` runs it: ALERT_WEBHOOK_URL set, a disabled endpoint → one alert."""
    app, receiver = create_reseller_receiver()
    async with serve_http(app) as base:
        url = f"{base}/hooks/ops-channel?token=hook-token-31b7"
        configured = settings.model_copy(
            update={"alerts": AlertSettings(webhook_url=SecretStr(url), interval_s=0.2)}
        )
        endpoints = Endpoints(kafka_bootstrap, database_url)
        async with runtime(configured, endpoints, providers=[carrier_objects]) as rt:
            await rt.pool.execute(
                "INSERT INTO resellers (id, name, created_at) VALUES ('acme', 'Acme', now());"
                "INSERT INTO reseller_webhooks (endpoint_id, reseller_id, url, sealed_secret, "
                "enabled, health, disabled_reason, created_at) VALUES ('ep-9', 'acme', "
                "'https://acme.example/h?key=k', 'x', false, 'disabled', 'endpoint answered "
                "410 Gone', now())"
            )
            async with scheduler_service(rt):
                [alert] = await receiver.wait_for(1, timeout=15)
    assert len(receiver.received("ops-channel")) == 1
    text = str(alert.payload["text"])
    assert text.startswith(f"[simfleet {settings.kafka.topic_prefix.rstrip('.')}] ALERT")
    assert "ep-9" in text
    assert "hook-token-31b7" not in text
    assert "acme.example" not in text
