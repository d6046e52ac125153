"""The webhook flow end to end: events on Kafka → signed POSTs the sandbox receiver verifies with
``standardwebhooks`` → claims, delivery events and ``webhook_deliveries`` rows."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from consumers.webhooks import attempts, dispatch
from consumers.webhooks.attempts import DELIVERY_SUCCEEDED
from events.sim import NumberOnline, NumberVerificationFailed, SimCancelled
from events.topics import WEBHOOK_DELIVERIES
from infra.settings import Settings
from tests.support.eventually import eventually
from tests.support.webhook_world import FAST, World, sms, webhook_world

pytestmark = pytest.mark.integration

ICCID = "8901260000000000001"
NUMBER = "+15559870001"
T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
async def world(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[World]:
    async with webhook_world(settings, kafka_bootstrap) as world:
        yield world


async def test_each_event_type_arrives_signed_in_its_documented_shape(world: World) -> None:
    await world.reseller("acme", {"acme-main": "ok"})
    sim_id = await world.sim(ICCID, NUMBER, "acme", mobility_subscription_id="38106")
    text = sms(NUMBER, "Your code is 123456", at=T0, port="2.01")
    online = NumberOnline.create(
        producer="t", time=T0, iccid=ICCID, number=NUMBER, request_id="r1",
        mobility_subscription_id="38106", online_until=T0 + timedelta(hours=17),
    )  # fmt: skip
    failed = NumberVerificationFailed.create(
        producer="t", time=T0, iccid=ICCID, number=NUMBER, request_id="r2", reason="no reply"
    )
    cancelled = SimCancelled.create(
        producer="t", time=T0, iccid=ICCID, request_id="r3", mobility_subscription_id="38106"
    )

    async with world.consumer():
        await world.publish([text, online, failed, cancelled])
        got = await world.receiver.wait_for(4, timeout=15)

    by_id = {d.webhook_id: d for d in got}
    assert all(d.signature_valid for d in got)
    group = f"{world.settings.kafka.topic_prefix}webhooks"  # the batch consumer's own metrics
    consumed = REGISTRY.get_sample_value("simfleet_events_consumed_total", {"consumer": group})
    assert consumed is not None
    assert consumed >= 4
    assert by_id[text.id].payload == {
        "event_type": "sms.received",
        "message_id": text.id,
        "created_at": text.time.isoformat().replace("+00:00", "Z"),
        "data": {
            "to": NUMBER, "from": "+15551230000", "body": "Your code is 123456",
            "received_at": "2026-02-04T12:00:00Z", "sim_id": sim_id, "iccid": ICCID,
            "number": NUMBER, "message": "Your code is 123456", "port": "2.01",
        },
    }  # fmt: skip
    assert by_id[online.id].payload == {
        "event_type": "number.online",
        "message_id": online.id,
        "created_at": "2026-02-04T12:00:00Z",
        "data": {
            "sim_id": sim_id, "iccid": ICCID, "number": NUMBER, "verified": True, "online": True,
            "online_until": "2026-02-05T05:00:00Z", "mobilitySubscriptionId": 38106,
        },
    }  # fmt: skip
    assert by_id[failed.id].payload["data"] == {
        "sim_id": sim_id, "iccid": ICCID, "number": NUMBER, "verified": False, "online": False,
        "online_until": None, "mobilitySubscriptionId": 38106, "reason": "no reply",
    }  # fmt: skip
    assert by_id[cancelled.id].payload == {
        "event_type": "sim.cancelled",
        "message_id": cancelled.id,
        "created_at": "2026-02-04T12:00:00Z",
        "data": {"sim_id": sim_id, "iccid": ICCID, "mobility_subscription_id": "38106"},
    }
    rows = await eventually(world.deliveries, until=lambda rows: len(rows) == 4)
    assert {(r["status"], r["attempts"], r["last_status_code"]) for r in rows.values()} == {
        ("delivered", 1, 200)
    }
    assert all(r["delivered_at"] is not None and r["last_latency_ms"] > 0 for r in rows.values())


def gaps(times: list[datetime]) -> list[float]:
    return [round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(times)]


async def test_retry_schedule_fast_then_via_the_retry_topic_then_final(world: World) -> None:
    await world.reseller("acme", {"flaky": "500_then_ok", "down": "fail_500"}, failures=3)
    await world.sim(ICCID, NUMBER, "acme")
    text = sms(NUMBER, "code 1")

    async with world.consumer(FAST.model_copy(update={"max_age_s": 3.0})):
        await world.publish([text])
        await world.receiver.wait_for(1, timeout=10, endpoint_id="flaky")
        rows = await eventually(
            world.deliveries,
            until=lambda rows: {r["status"] for r in rows.values()} == {"delivered", "failed"},
        )

    flaky = [d.received_at for d in world.receiver.received("flaky")]
    # attempts 1-3 in process (0.2 s, 0.4 s apart), then 0.6 s through webhook.retry
    assert len(flaky) == 4
    for gap, planned in zip(gaps(flaky), (0.2, 0.4, 0.6), strict=True):
        assert planned - 0.05 <= gap <= planned + 0.5
    assert world.receiver.ids("flaky") == [text.id]
    assert rows[(text.id, "flaky")]["attempts"] == 4
    # "down": 0.2, 0.4, 0.6, 1.0 s — the next wait would pass max_age_s (3 s): final
    down = rows[(text.id, "down")]
    assert len(world.receiver.received("down")) == down["attempts"] == 5
    assert (down["status"], down["last_status_code"]) == ("failed", 500)
    assert down["last_error"].startswith("HTTP 500")
    assert down["next_attempt_at"] is None
    claims = await world.pool.fetch("SELECT endpoint_id, state, attempts FROM webhook_claims")
    assert {(c["endpoint_id"], c["state"], c["attempts"]) for c in claims} == {
        ("flaky", "delivered", 4),
        ("down", "failed", 5),
    }


async def test_410_disables_the_endpoint_and_nothing_more_is_sent(world: World) -> None:
    await world.reseller("acme", {"gone": "gone_410", "alive": "ok"})
    await world.sim(ICCID, NUMBER, "acme")
    first, second = sms(NUMBER, "one"), sms(NUMBER, "two")

    async with world.consumer():
        await world.publish([first])
        await eventually(
            lambda: world.pool.fetchrow(
                "SELECT enabled, health, disabled_reason FROM reseller_webhooks "
                "WHERE endpoint_id = 'gone'"
            ),
            until=lambda row: row is not None and not row["enabled"],
        )
        await world.publish([second])
        await world.receiver.wait_for(2, endpoint_id="alive")

    assert [d.status_code for d in world.receiver.received("gone")] == [410]
    rows = await world.deliveries()
    assert (rows[(first.id, "gone")]["status"], rows[(first.id, "gone")]["attempts"]) == (
        "failed",
        1,
    )
    assert (second.id, "gone") not in rows
    endpoint = await world.pool.fetchrow(
        "SELECT * FROM reseller_webhooks WHERE endpoint_id = 'gone'"
    )
    assert endpoint["health"] == "disabled"
    assert "410" in endpoint["disabled_reason"]


async def test_a_private_target_is_refused_at_send_time(world: World) -> None:
    # registered while private targets were allowed (or DNS changed since): refused when sending
    await world.reseller("acme", {"inside": "ok"})
    await world.sim(ICCID, NUMBER, "acme")
    text = sms(NUMBER, "secret code 999")

    async with world.consumer(FAST.model_copy(update={"allow_private": False})):
        await world.publish([text])
        rows = await eventually(world.deliveries)

    row = rows[(text.id, "inside")]
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("failed", 1, None)
    assert "not public" in row["last_error"] or "local" in row["last_error"]
    assert world.receiver.received() == []


async def test_a_hanging_endpoint_does_not_delay_a_healthy_one(world: World) -> None:
    await world.reseller("acme", {"stuck": "hang", "healthy": "ok"})
    await world.sim(ICCID, NUMBER, "acme")
    # a small queue per endpoint: the stuck endpoint's overflow waits in Postgres for the sweeper
    # the hanging endpoint holds each attempt for timeout_s: a healthy delivery that waited
    # behind one would arrive at least that late, whatever the machine's load
    isolated = FAST.model_copy(update={"per_endpoint_queue": 40, "timeout_s": 5.0})
    sent_at: dict[str, float] = {}

    async with world.consumer(isolated):
        for wave in range(10):
            batch = [sms(NUMBER, f"wave {wave} sms {i}") for i in range(20)]
            now = time.time()
            sent_at.update({e.id: now for e in batch})
            await world.publish(batch)
            await asyncio.sleep(0.1)
        got = await world.receiver.wait_for(200, timeout=20, endpoint_id="healthy")

    latencies = [d.received_at.timestamp() - sent_at[d.webhook_id or ""] for d in got]
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert p99 < isolated.timeout_s, f"healthy p99 {p99:.3f}s"
    assert len(set(world.receiver.ids("healthy"))) == 200
    assert world.receiver.ids("stuck") == []


async def test_a_backlog_larger_than_its_line_goes_through_without_waiting_for_sweeps(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint's line holds 10: the rest of 60 waits in Postgres and is swept back in
    batches (3 here) as the line drains — never a batch per sweep interval (30 s here)."""
    monkeypatch.setattr(dispatch, "SWEEP_BATCH", 3)
    await world.reseller("acme", {"main": "ok"})
    await world.sim(ICCID, NUMBER, "acme")
    backlog = [sms(NUMBER, f"backlog {i}") for i in range(60)]
    short_line = FAST.model_copy(update={"per_endpoint_queue": 10, "sweep_interval_s": 30.0})

    async with world.consumer(short_line):
        await world.publish(backlog)
        await world.receiver.wait_for(60, timeout=15, endpoint_id="main")

    assert set(world.receiver.ids("main")) == {e.id for e in backlog}


async def test_redelivered_source_events_are_not_sent_again(world: World) -> None:
    """The consumer died after sending, before committing: the events are read again."""
    await world.reseller("acme", {"main": "ok"})
    await world.sim(ICCID, NUMBER, "acme")
    first = [sms(NUMBER, f"before the crash {i}") for i in range(20)]
    async with world.consumer():
        await world.publish(first)
        await world.receiver.wait_for(20, endpoint_id="main")

    # a fresh group reads every event again, as after a crash before the offset commit
    after = sms(NUMBER, "after the restart")  # same key: same partition, behind the others
    async with world.consumer(group="webhooks-after-crash"):
        await world.publish([after])
        await world.receiver.wait_for(21, endpoint_id="main")

    ids = world.receiver.ids("main")
    assert sorted(ids) == sorted(e.id for e in [*first, after])


async def test_a_batch_holding_an_sms_twice_delivers_it_once_beside_a_failing_endpoint(
    world: World,
) -> None:
    """One batch, one claim statement: the repeated SMS is claimed once per endpoint, and the
    endpoint answering 500 holds up neither the healthy one nor the rest of the batch."""
    await world.reseller("acme", {"healthy": "ok", "broken": "fail_500"})
    await world.sim(ICCID, NUMBER, "acme")
    texts = [sms(NUMBER, f"batch {i}") for i in range(10)]

    async with world.consumer():
        await world.publish([texts[0], *texts, texts[5], texts[9]])  # same key: one partition
        await world.receiver.wait_for(10, endpoint_id="healthy")
        await asyncio.sleep(0.5)  # a second delivery of a repeated SMS would come now

    assert sorted(world.receiver.ids("healthy")) == sorted(e.id for e in texts)
    assert world.receiver.ids("broken") == []


async def test_a_delivery_interrupted_mid_retry_is_finished_by_the_next_worker(
    world: World,
) -> None:
    # the receiver answers its first 10 requests 500: every first attempt fails
    await world.reseller("acme", {"main": "500_then_ok"}, failures=10)
    await world.sim(ICCID, NUMBER, "acme")
    texts = [sms(NUMBER, f"interrupted {i}") for i in range(10)]
    slow_retry = FAST.model_copy(update={"fast_delays_s": (2.0,), "lease_margin_s": 0.3})

    async with world.consumer(slow_retry):
        await world.publish(texts)
        await eventually(lambda: _answered(world, "main"), until=lambda n: n == 10)
    # killed while every delivery waited for its second attempt
    assert world.receiver.ids("main") == []

    async with world.consumer(slow_retry):
        await world.receiver.wait_for(10, timeout=15, endpoint_id="main")
        rows = await eventually(
            world.deliveries,
            until=lambda rows: [r["status"] for r in rows.values()] == ["delivered"] * 10,
        )

    assert sorted(world.receiver.ids("main")) == sorted(e.id for e in texts)
    assert {r["attempts"] for r in rows.values()} == {2}


async def _answered(world: World, endpoint_id: str) -> int:
    return len(world.receiver.received(endpoint_id))


async def test_resend_starts_a_new_attempt_sequence(world: World) -> None:
    await world.reseller("acme", {"main": "fail_500"})
    await world.sim(ICCID, NUMBER, "acme")
    text = sms(NUMBER, "lost then found")

    async with world.consumer(FAST.model_copy(update={"max_age_s": 0.5})):
        await world.publish([text])
        await eventually(world.deliveries, until=lambda r: _status(r, text.id) == "failed")
        world.receiver.set_mode("main", "ok")
        await world.commands.resend("acme", "test", only_failed=True)
        await world.receiver.wait_for(1, endpoint_id="main")
        # a resend leaves deliveries in progress alone: wait until this one is recorded
        await eventually(world.deliveries, until=lambda r: _status(r, text.id) == "delivered")
        await world.commands.resend("acme", "test", message_ids=[text.id])
        await world.receiver.wait_for(2, endpoint_id="main")
        rows = await eventually(
            world.deliveries, until=lambda r: r[(text.id, "main")]["attempts"] == 4
        )

    assert world.receiver.ids("main") == [text.id, text.id]
    row = rows[(text.id, "main")]
    assert (row["status"], row["last_status_code"], row["last_error"]) == ("delivered", 200, None)


async def test_during_a_rotation_both_secrets_sign(world: World) -> None:
    issued = await world.reseller("acme", {"rotating": "ok"})
    await world.sim(ICCID, NUMBER, "acme")
    rotated = await world.commands.rotate_secret("acme", "rotating", "test")
    await eventually(lambda: world.pool.fetchval(
        "SELECT previous_sealed_secret FROM reseller_webhooks WHERE endpoint_id = 'rotating'"))  # fmt: skip
    assert rotated.secret != issued["rotating"].secret

    async with world.consumer():
        # the receiver holds only the old secret: the old signature must still be there
        await world.publish([sms(NUMBER, "during the overlap")])
        [delivery] = await world.receiver.wait_for(1, endpoint_id="rotating")

    assert delivery.signature_valid is True
    sealed = await world.pool.fetchrow(
        "SELECT sealed_secret, previous_sealed_secret FROM reseller_webhooks"
    )
    assert world.box.unseal(sealed["sealed_secret"]) == rotated.secret
    assert world.box.unseal(sealed["previous_sealed_secret"]) == issued["rotating"].secret


def _status(rows: dict[tuple[str, str], Any], message_id: str) -> str | None:
    row = rows.get((message_id, "main"))
    return None if row is None else str(row["status"])


async def test_a_delivery_waiting_to_retry_holds_none_of_its_endpoints_workers(
    world: World,
) -> None:
    """One worker for the endpoint: the first SMS is answered 500 and waits 2 s for its second
    attempt; the one behind it is delivered meanwhile, not after that pause."""
    await world.reseller("acme", {"main": "500_then_ok"}, failures=1)
    await world.sim(ICCID, NUMBER, "acme")
    first, second = sms(NUMBER, "answered 500 first"), sms(NUMBER, "behind it")
    one_worker = FAST.model_copy(
        update={"per_endpoint_concurrency": 1, "fast_delays_s": (2.0,), "lease_margin_s": 3.0}
    )

    async with world.consumer(one_worker):
        await world.publish([first, second])  # same key: one partition, in this order
        await world.receiver.wait_for(2, timeout=10, endpoint_id="main")

    assert world.receiver.ids("main") == [second.id, first.id]


async def test_deliveries_made_are_recorded_before_the_consumer_stops(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt does not wait for its claim and event to be written (they go in groups): a
    consumer stopping right after the POSTs still writes them before its recorder stops."""
    monkeypatch.setattr(attempts, "GROUP_WINDOW_S", 1.0)  # the group still open at the stop
    await world.reseller("acme", {"main": "ok"})
    await world.sim(ICCID, NUMBER, "acme")
    texts = [sms(NUMBER, f"just before the stop {i}") for i in range(5)]

    async with world.consumer():
        await world.publish(texts)
        await world.receiver.wait_for(5, endpoint_id="main")

    states = await world.pool.fetch(
        "SELECT state FROM webhook_claims WHERE message_id = ANY($1::text[])", [e.id for e in texts]
    )
    assert [r["state"] for r in states] == ["delivered"] * 5
    published = [orjson.loads(v) for v in await world.published(WEBHOOK_DELIVERIES)]
    succeeded = {e["data"]["message_id"] for e in published if e["type"] == DELIVERY_SUCCEEDED}
    assert succeeded >= {e.id for e in texts}
