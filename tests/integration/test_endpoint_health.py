"""Endpoint health on the real broker, Postgres and the sandbox receiver over HTTP: failing and
recovered from delivery outcomes; failing for 3 days (the injected clock) disables it, an alert
goes out once and resolves once it is re-enabled, and re-enabling redelivers what it missed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from alerting import checks as alert_checks
from consumers.webhooks import endpoint_health
from events.sim import NumberOnline
from events.webhook import WebhookDeliveryFailed
from infra.settings import Settings
from tests.support.eventually import eventually
from tests.support.health_world import HealthWorld, health_world
from tests.support.webhook_world import FAST, World, sms, webhook_world

pytestmark = pytest.mark.integration

ICCID = "8901260000000000071"
NUMBER = "+15559870071"
HEALTH_FAST = FAST.model_copy(update={"failing_after": 3})


@pytest.fixture
async def hw(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[HealthWorld]:
    async with (
        webhook_world(settings, kafka_bootstrap, HEALTH_FAST) as world,
        health_world(world) as hw,
    ):
        yield hw


async def health_of(world: World, endpoint_id: str) -> tuple[bool, str] | None:
    row = await world.pool.fetchrow(
        "SELECT enabled, health FROM reseller_webhooks WHERE endpoint_id = $1", endpoint_id
    )
    return None if row is None else (row["enabled"], row["health"])


async def claim_state(world: World, message_id: str) -> str | None:
    state: str | None = await world.pool.fetchval(
        "SELECT state FROM webhook_claims WHERE message_id = $1", message_id
    )
    return state


async def test_an_endpoint_failing_everything_goes_failing_then_recovers(hw: HealthWorld) -> None:
    world = hw.world
    await world.reseller("acme", {"ep-a": "fail_500"})
    await world.sim(ICCID, NUMBER, "acme")
    text = sms(NUMBER, "hello")

    async with world.consumer():  # real time: signatures carry it
        await world.publish([text])
        await eventually(lambda: health_of(world, "ep-a"), until=lambda h: h == (True, "failing"))
        failing_since = await world.pool.fetchval(
            "SELECT failing_since FROM reseller_webhooks WHERE endpoint_id = 'ep-a'"
        )
        assert failing_since is not None
        world.receiver.set_mode("ep-a", "ok")  # the reseller fixed their server
        await eventually(lambda: health_of(world, "ep-a"), until=lambda h: h == (True, "healthy"),
                         within=20)  # fmt: skip

    assert await claim_state(world, text.id) == "delivered"
    failing = await eventually(lambda: hw.event_types("webhook.endpoint_failing"))
    recovered = await eventually(lambda: hw.event_types("webhook.endpoint_recovered"))
    assert (len(failing), len(recovered)) == (1, 1)
    assert await hw.event_types("webhook.endpoint_disabled") == []


async def test_failing_for_three_days_disables_alerts_once_and_reenabling_redelivers(
    hw: HealthWorld,
) -> None:
    world = hw.world
    await world.reseller("acme", {"ep-b": "fail_500"})
    await world.sim(ICCID, NUMBER, "acme")
    first = sms(NUMBER, "before the outage was noticed")
    alerts = hw.alerts(alert_checks.DisabledEndpoints(world.pool))

    async with world.consumer():  # real time: signatures carry it
        await world.publish([first])
        await eventually(lambda: health_of(world, "ep-b"), until=lambda h: h == (True, "failing"))
        assert await endpoint_health.disable_overdue(hw.tracker) == 0  # not yet three days
        hw.clock.advance(timedelta(days=3))
        assert await endpoint_health.disable_overdue(hw.tracker) == 1
        assert await endpoint_health.disable_overdue(hw.tracker) == 0
        await eventually(lambda: health_of(world, "ep-b"), until=lambda h: h == (False, "disabled"))
        # the attempts still due find it disabled and stop; what arrives now is kept, unsent
        await eventually(lambda: claim_state(world, first.id), until=lambda s: s == "failed",
                         within=20)  # fmt: skip
        online = NumberOnline.create(
            producer="t", time=hw.clock.now(), iccid=ICCID, number=NUMBER, request_id="r-71"
        )
        await world.publish([online])
        await eventually(lambda: claim_state(world, online.id), until=lambda s: s == "skipped")

        assert await alerts.evaluate() == 1
        assert await alerts.evaluate() == 0  # once per incident
        [alert] = hw.alert_texts()
        assert "ALERT endpoint_disabled" in alert
        assert "ep-b" in alert
        assert "every delivery failed for 3 days" in alert
        assert world.receiver_base not in alert  # no endpoint URL (it may carry a token)
        banner = await world.pool.fetch(
            "SELECT endpoint_id FROM reseller_webhooks WHERE NOT enabled OR health <> 'healthy'"
        )
        assert [r["endpoint_id"] for r in banner] == ["ep-b"]

        world.receiver.set_mode("ep-b", "ok")
        missed, _since = await world.commands.missed("acme", "ep-b")
        assert missed == 2
        done = await world.commands.enable_endpoint("acme", "ep-b", "test", redeliver=True)
        assert done.resend_event_id is not None
        await world.receiver.wait_for(1, timeout=20)
        await eventually(
            lambda: claim_state(world, online.id), until=lambda s: s == "delivered", within=20
        )
        await eventually(
            lambda: claim_state(world, first.id), until=lambda s: s == "delivered", within=20
        )

    accepted = {d.webhook_id for d in world.receiver.received("ep-b") if d.accepted}
    assert accepted == {first.id, online.id}
    assert await health_of(world, "ep-b") == (True, "healthy")
    assert await alerts.evaluate() == 1  # the resolve message
    assert await alerts.evaluate() == 0
    texts = hw.alert_texts()
    assert len(texts) == 2
    assert texts[1].startswith("[simfleet test] RESOLVED endpoint_disabled")
    disabled = await eventually(lambda: hw.event_types("webhook.endpoint_disabled"))
    assert len(disabled) == 1


async def test_a_redelivered_batch_changes_nothing(hw: HealthWorld) -> None:
    now = hw.clock.now()
    batch = [
        endpoint_health.Positioned(
            WebhookDeliveryFailed.create(
                producer="t", time=now, message_id=f"m{i}", endpoint_id="ep-r",
                reseller_id="acme", event_type="sms.received", attempt=1, status_code=503,
                attempted_at=now, error="HTTP 503", final=False,
            ),
            "delivery",
            offset=i,
        )
        for i in range(4)
    ]  # fmt: skip

    await endpoint_health.apply(hw.tracker, batch)
    await endpoint_health.apply(hw.tracker, batch)  # the offset was not committed: read again

    row = await hw.world.pool.fetchrow("SELECT * FROM endpoint_health WHERE endpoint_id = 'ep-r'")
    assert (row["state"], row["failures"], row["delivery_offset"]) == ("failing", 4, 3)
    failing = await eventually(lambda: hw.event_types("webhook.endpoint_failing"))
    assert len(failing) == 1
