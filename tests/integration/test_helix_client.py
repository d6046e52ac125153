"""HelixClient against the Helix sandbox (a real HTTP server), real Postgres and, once, Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from events.helix import HelixApiCalled
from infra.bus import Bus
from infra.helix.client import HelixClient
from infra.helix.errors import HelixOutcomeUnknown, HelixRejected, HelixUnavailable
from infra.helix.models import SubscriberDetails
from infra.http import serve_http
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.retry import RetryPolicy
from infra.settings import HelixSettings, Settings
from sandbox.helix import HelixFaults, HelixSandbox, create_helix_sandbox, sandbox_of
from sandbox.helix_world import HelixWorld, make_iccid, make_imei
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration

CLIENT_ID = "auth0-client-Kx7Wq2"
USERNAME = "ops@simfleet.example"
GRANT_PASSWORD = "gr4nt-p4ss-Zq9-secret"
# retries compressed to milliseconds; Retry-After still honoured up to 2 s
FAST = RetryPolicy(
    max_attempts=6, base_delay_s=0.01, max_delay_s=0.05, budget_s=8.0, max_retry_after_s=2.0
)
CLIENT_TIMEOUT_S = 0.4


@dataclass
class Carrier:
    world: HelixWorld
    sandbox: HelixSandbox
    url: str
    database_url: str
    emitted: list[HelixApiCalled] = field(default_factory=list)
    stack: list[Any] = field(default_factory=list)

    def settings(self) -> HelixSettings:
        return HelixSettings(
            api_base=self.url,
            token_url=f"{self.url}/oauth/token",
            client_id=CLIENT_ID,
            audience="https://hx.example/api",
            grant_username=USERNAME,
            grant_password=SecretStr(GRANT_PASSWORD),
            activation_client_id=230,
            plan_id=985,
            ban="BAN-1",
            fan="FAN-1",
            address1="1 Main St",
            city="New York",
            state="NY",
            zip="10001",
            timeout_s=CLIENT_TIMEOUT_S,
            rate_limit_per_s=1000,
            concurrency=64,
        )

    async def client(self, settings: HelixSettings | None = None, emit: Any = None) -> HelixClient:
        """A new client with its own HTTP client and pool: what a second process would have."""
        settings = settings or self.settings()
        http = httpx.AsyncClient(base_url=self.url, timeout=settings.timeout_s)
        pool = await create_pool(self.database_url, min_size=1, max_size=4)
        self.stack += [http, pool]

        async def collect(event: HelixApiCalled) -> None:
            self.emitted.append(event)

        return HelixClient(http, settings, pool, emit or collect, policy=FAST)

    def calls(self, operation: str) -> list[HelixApiCalled]:
        return [e for e in self.emitted if e.data.operation == operation]


@pytest.fixture
async def carrier(database_url: str) -> AsyncIterator[Carrier]:
    world = HelixWorld(client_id=CLIENT_ID, username=USERNAME, password=GRANT_PASSWORD)
    app = create_helix_sandbox(world)
    async with serve_http(app) as url:
        found = Carrier(world, sandbox_of(app), url, database_url)
        try:
            yield found
        finally:
            for resource in found.stack:
                await (
                    resource.aclose()
                    if isinstance(resource, httpx.AsyncClient)
                    else resource.close()
                )
    assert_no_secret_in(found.emitted, found.world)


def assert_no_secret_in(events: list[HelixApiCalled], world: HelixWorld) -> None:
    secrets = [GRANT_PASSWORD, CLIENT_ID, *world.tokens]
    for event in events:
        dumped = event.model_dump_json()
        assert not [s for s in secrets if s in dumped], dumped


def new_line(serial: int) -> tuple[str, str]:
    return make_iccid(serial), make_imei(serial)


async def test_activation_then_details_show_the_number_once_the_carrier_assigns_it(
    carrier: Carrier,
) -> None:
    carrier.world.number_delay_calls = 2
    helix = await carrier.client()
    iccid, imei = new_line(1)

    sub_id = await helix.activate(iccid, imei)
    pending = [await helix.details(sub_id, iccid=iccid) for _ in range(2)]
    assigned = await helix.details(sub_id, iccid=iccid)

    assert [d.phone_number for d in pending] == [None, None]
    assert pending[0].is_active
    assert assigned.phone_number is not None
    assert assigned.number == f"+1{assigned.phone_number}"
    assert (assigned.iccid, assigned.billing_imei, assigned.mobility_subscription_id) == (
        iccid,
        imei,
        sub_id,
    )
    assert carrier.world.activations[iccid] == 1
    [activation] = carrier.calls("activation")
    assert activation.data.request_body == {
        "clientId": 230,
        "plan": {"id": 985},
        "BAN": "BAN-1",
        "FAN": "FAN-1",
        "activationType": "new_activation",
        "subscriber": {"firstName": "Simfleet", "lastName": "Line"},
        "address": {"address1": "1 Main St", "city": "New York", "state": "NY", "zipCode": "10001"},
        "service": {"imei": imei, "iccid": iccid},
    }
    assert activation.data.status_code == 201
    assert activation.subject == iccid
    [token] = carrier.calls("token")
    assert token.data.request_body["password"] == "***"
    assert token.data.request_body["client_id"] == "***"
    assert token.data.response_body["access_token"] == "***"
    assert [e.data.operation for e in carrier.emitted] == [
        "token",
        "activation",
        *["subscriber_details"] * 3,
    ]
    assert all(e.data.ok and e.data.duration_ms >= 0 for e in carrier.emitted)


async def test_details_accept_string_or_number_ids_and_empty_numbers() -> None:
    empty = SubscriberDetails.model_validate(
        {"mobilitySubscriptionId": 38106, "phoneNumber": "", "planId": 985, "status": "ACTIVE"}
    )
    assert (empty.mobility_subscription_id, empty.phone_number, empty.plan_id) == (
        "38106",
        None,
        "985",
    )
    timed_out = SubscriberDetails.model_validate(
        {"mobilitySubscriptionId": "1", "status": "ACTIVE", "statusReason": "Port Timed Out"}
    )
    assert timed_out.has_failed


async def test_mdn_change_gives_a_new_number_and_keeps_the_old_one(carrier: Carrier) -> None:
    helix = await carrier.client()
    iccid, imei = new_line(2)
    sub_id = await helix.activate(iccid, imei)
    before = await helix.details(sub_id)

    changed = await helix.change_mdn(sub_id, iccid=iccid, current_number=before.number)
    after = await helix.details(sub_id)

    assert changed.subscriber_number == before.phone_number
    assert changed.new_subscriber_number == after.phone_number != before.phone_number
    assert after.old_phone_number == before.phone_number
    assert changed.mobility_subscription_id == sub_id

    carrier.world.reject_next_mdn_change(iccid, "Number pool exhausted")
    with pytest.raises(HelixRejected) as rejected:
        await helix.change_mdn(sub_id)
    assert (rejected.value.status_code, rejected.value.carrier_message) == (
        200,
        "Number pool exhausted",
    )


async def test_mdn_change_of_an_inactive_line_is_a_permanent_500(carrier: Carrier) -> None:
    helix = await carrier.client()
    iccid, imei = new_line(3)
    sub_id = await helix.activate(iccid, imei)
    await helix.cancel(sub_id, iccid=iccid)

    with pytest.raises(HelixRejected) as rejected:
        await helix.change_mdn(sub_id)

    assert rejected.value.status_code == 500
    assert not rejected.value.retryable
    assert rejected.value.carrier_message == "Subscriber must be active"
    assert carrier.world.calls["mdn_change"] == 1  # not retried


async def test_cancel_reads_details_then_cancels_and_counts_already_cancelled_as_done(
    carrier: Carrier,
) -> None:
    helix = await carrier.client()
    iccid, imei = new_line(4)
    sub_id = await helix.activate(iccid, imei)
    number = (await helix.details(sub_id)).phone_number
    assert number is not None

    suspended = await helix.set_status(number, "suspend")
    assert (await helix.details(sub_id)).status == "SUSPENDED"
    await helix.set_status(number, "restore")
    cancelled = await helix.cancel(sub_id, iccid=iccid)
    details = await helix.details(sub_id)
    again = await helix.set_status(number, "cancel")
    via_details = await helix.cancel(sub_id)

    assert (suspended.already, cancelled.already, again.already, via_details.already) == (
        False,
        False,
        True,
        True,
    )
    assert details.is_cancelled
    assert details.status == "CANCELED"
    assert [e.data.operation for e in carrier.emitted if "cancel" in e.data.operation] == [
        "cancel_get_details",
        "cancel_subscription",
        "cancel_get_details",
    ]
    [cancel_call] = carrier.calls("cancel_subscription")
    assert cancel_call.data.method == "PATCH"
    assert cancel_call.data.url.endswith("/api/mobility-subscriber/status")
    assert cancel_call.data.request_body == [
        {
            "subscriberNumber": number,
            "reasonCode": "CAN",
            "reasonCodeId": 1,
            "subscriberState": "Cancel",
        }
    ]
    with pytest.raises(HelixRejected, match="not active"):
        await helix.set_status(number, "suspend")


async def test_activating_an_active_iccid_or_a_bad_one_is_rejected_without_retry(
    carrier: Carrier,
) -> None:
    helix = await carrier.client()
    iccid, imei = new_line(5)
    await helix.activate(iccid, imei)

    with pytest.raises(HelixRejected) as duplicate:
        await helix.activate(iccid, imei)
    with pytest.raises(HelixRejected) as bad_iccid:
        await helix.activate(iccid[:-1] + str((int(iccid[-1]) + 1) % 10), imei)

    assert duplicate.value.status_code == 400
    assert not duplicate.value.retryable
    assert duplicate.value.reason == f"ICCID {iccid} already has an active subscription"
    assert "Invalid ICCID" in bad_iccid.value.reason
    assert carrier.world.calls["activation"] == 3
    assert carrier.world.activations[iccid] == 1


async def test_a_401_refreshes_the_token_once_and_replays_the_call(carrier: Carrier) -> None:
    helix = await carrier.client()
    sub_id = await helix.activate(*new_line(6))
    carrier.world.expire_tokens()  # the carrier no longer accepts the cached token

    await helix.details(sub_id)

    assert carrier.world.token_requests == 2
    assert [e.data.status_code for e in carrier.calls("subscriber_details")] == [401, 200]


async def test_wrong_grant_password_is_permanent_and_fetched_once_for_all_waiters(
    carrier: Carrier,
) -> None:
    settings = carrier.settings().model_copy(update={"grant_password": SecretStr("wrong-pass-1")})
    helix = await carrier.client(settings)

    results = await asyncio.gather(
        *(helix.details("38100") for _ in range(10)), return_exceptions=True
    )

    assert all(isinstance(r, HelixRejected) and r.status_code == 403 for r in results)
    assert carrier.world.token_requests == 1
    assert carrier.calls("token")[0].data.response_body["error"] == "invalid_grant"


async def test_429_with_retry_after_and_5xx_are_retried_to_success(carrier: Carrier) -> None:
    helix = await carrier.client()
    sub_id = await helix.activate(*new_line(7))
    carrier.sandbox.switch("rate_limited", HelixFaults(fraction=1.0, limit=1, retry_after_s=1))

    started = time.monotonic()
    await helix.details(sub_id)
    waited = time.monotonic() - started

    carrier.sandbox.switch("flaky_5xx", HelixFaults(fraction=1.0, limit=3))
    await helix.details(sub_id)

    assert waited >= 1.0  # the carrier's Retry-After, not the 10 ms backoff
    statuses = [e.data.status_code for e in carrier.calls("subscriber_details")]
    assert statuses[:2] == [429, 200]
    assert all(s is not None and s >= 500 for s in statuses[2:5])
    assert statuses[5] == 200


async def test_persistent_5xx_gives_up_with_a_retryable_error(carrier: Carrier) -> None:
    helix = await carrier.client()
    sub_id = await helix.activate(*new_line(8))
    carrier.sandbox.switch("flaky_5xx", HelixFaults(fraction=1.0))

    with pytest.raises(HelixUnavailable) as unavailable:
        await helix.details(sub_id)

    assert unavailable.value.retryable
    assert len(carrier.calls("subscriber_details")) == FAST.max_attempts


async def test_timeouts_are_retried_and_never_activate_twice(carrier: Carrier) -> None:
    helix = await carrier.client()
    carrier.sandbox.switch("timeouts", HelixFaults(fraction=1.0, limit=1, hang_s=5))
    lost_request = new_line(9)
    sub_id = await helix.activate(*lost_request)

    carrier.sandbox.switch(
        "timeouts", HelixFaults(fraction=1.0, limit=1, hang_s=5, hang_after_processing=True)
    )
    lost_answer = new_line(10)
    with pytest.raises(HelixOutcomeUnknown):
        await helix.activate(*lost_answer)

    assert sub_id
    assert carrier.world.activations[lost_request[0]] == 1
    assert carrier.world.activations[lost_answer[0]] == 1
    first = carrier.calls("activation")[0].data
    assert (first.ok, first.status_code) == (False, None)
    assert first.error is not None
    assert "Timeout" in first.error


async def test_an_mdn_change_whose_answer_was_lost_is_not_repeated(carrier: Carrier) -> None:
    helix = await carrier.client()
    iccid, imei = new_line(11)
    sub_id = await helix.activate(iccid, imei)
    before = await helix.details(sub_id)
    lose_answers = HelixFaults(
        fraction=1.0,
        limit=1,
        hang_s=5,
        hang_after_processing=True,
        operations=frozenset({"mdn_change"}),
    )
    carrier.sandbox.switch("timeouts", lose_answers)

    changed = await helix.change_mdn(sub_id, current_number=before.phone_number)

    after = carrier.world.subscriber_by_iccid(iccid)
    assert after is not None
    assert changed.new_subscriber_number == after.phone_number
    assert after.old_phone_number == before.phone_number  # changed exactly once
    assert carrier.world.calls["mdn_change"] == 1


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("expired_at", ["cache", "carrier"])
async def test_fifty_concurrent_calls_with_an_expired_token_fetch_exactly_one(
    carrier: Carrier, database_url: str, processes: int, expired_at: str
) -> None:
    first = await carrier.client()
    sub_id = await first.activate(*new_line(12))
    if expired_at == "cache":
        # every process starts cold and finds only an expired row in token_cache
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE token_cache SET expires_at = now() - interval '1 minute'")
        finally:
            await conn.close()
        clients = [await carrier.client() for _ in range(processes)]
    else:
        clients = [first, *[await carrier.client() for _ in range(processes - 1)]]
        for helix in clients:
            await helix.details(sub_id)  # warm: a second process reuses the shared token
        assert carrier.world.token_requests == 1
    carrier.world.expire_tokens()

    results = await asyncio.gather(*(clients[i % processes].details(sub_id) for i in range(50)))

    assert {r.mobility_subscription_id for r in results} == {sub_id}
    assert carrier.world.token_requests == 2  # the first token, then exactly one refresh


async def test_sandbox_speaks_form_and_bulk_dialects(carrier: Carrier) -> None:
    helix = await carrier.client()
    iccid, imei = new_line(13)
    sub_id = await helix.activate(iccid, imei)
    number = (await helix.details(sub_id)).phone_number
    async with httpx.AsyncClient(base_url=carrier.url) as raw:
        form = {"grant_type": "password", "client_id": CLIENT_ID, "username": USERNAME}
        token = await raw.post("/oauth/token", data={**form, "password": GRANT_PASSWORD})
        refused = await raw.post("/oauth/token", data={**form, "password": "nope-nope"})
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        bulk = await raw.post(
            "/api/mobility-subscriber/details",
            json=[{"mobilitySubscriptionId": int(sub_id)}, {"subscriberNumber": number}],
            headers=auth,
        )
        codes = await raw.get("/api/mobility-subscriber/reason-codes", headers=auth)
        anonymous = await raw.get("/api/mobility-subscriber/reason-codes")
        stats = await raw.get("/_sandbox/stats")

    assert token.status_code == 200
    assert token.json()["token_type"] == "Bearer"
    assert refused.status_code == 403
    assert refused.json()["error"] == "invalid_grant"
    assert [row["iccid"] for row in bulk.json()] == [iccid, iccid]
    assert {(c["reasonCode"], c["reasonCodeId"]) for c in codes.json()} == {
        ("CAN", 1),
        ("CR", 22),
        ("CR", 35),
    }
    assert anonymous.status_code == 401
    assert stats.json()["activations"] == {iccid: 1}


async def test_rejects_activation_and_slow_modes(carrier: Carrier) -> None:
    helix = await carrier.client()
    carrier.sandbox.switch("rejects_activation", HelixFaults(fraction=1.0))
    with pytest.raises(HelixRejected, match="Address verification failed"):
        await helix.activate(*new_line(16))
    assert carrier.world.calls["activation"] == 1

    carrier.sandbox.switch("slow", HelixFaults(latency_s=0.2))
    started = time.monotonic()
    await helix.activate(*new_line(17))
    assert time.monotonic() - started >= 0.2


async def test_a_number_assigned_seconds_later_shows_as_empty_until_then(carrier: Carrier) -> None:
    carrier.world.number_delay_s, carrier.world.empty_number = 0.3, ""
    helix = await carrier.client()
    sub_id = await helix.activate(*new_line(18))

    first = await helix.details(sub_id)
    assigned = await eventually(lambda: helix.details(sub_id), until=lambda d: bool(d.phone_number))

    assert first.phone_number is None
    assert carrier.calls("subscriber_details")[0].data.response_body[0]["phoneNumber"] == ""
    assert assigned.number is not None


async def test_the_rate_limit_paces_calls_to_the_account(carrier: Carrier) -> None:
    helix = await carrier.client(carrier.settings().model_copy(update={"rate_limit_per_s": 20.0}))
    sub_id = await helix.activate(*new_line(19))  # uses 1 of the burst of 20

    started = time.monotonic()
    await asyncio.gather(*(helix.details(sub_id) for _ in range(29)))

    # 19 calls fit in the remaining burst; the other 10 wait their turn at 20/s
    assert time.monotonic() - started >= 10 / 20 * 0.9


async def test_carrier_side_drift_shows_in_details(carrier: Carrier) -> None:
    helix = await carrier.client()
    iccid, imei = new_line(14)
    sub_id = await helix.activate(iccid, imei)
    before = await helix.details(sub_id)

    carrier.world.force_mdn(iccid, "9175550123")

    after = await helix.details(sub_id)
    assert (after.phone_number, after.old_phone_number) == ("9175550123", before.phone_number)


async def test_audit_records_on_the_broker_carry_no_secret(
    carrier: Carrier, settings: Settings, topics: list[str], kafka_bootstrap: str
) -> None:
    from aiokafka import AIOKafkaConsumer

    prefix = settings.kafka.topic_prefix
    broker = build_broker(settings.kafka, kafka_bootstrap)
    async with broker:
        await broker.start()
        bus = Bus(broker, prefix)

        async def emit(event: HelixApiCalled) -> None:
            carrier.emitted.append(event)
            await bus.emit(event)

        helix = await carrier.client(emit=emit)
        iccid, imei = new_line(15)
        sub_id = await helix.activate(iccid, imei)
        carrier.world.expire_tokens()
        await helix.details(sub_id, iccid=iccid)
        await helix.change_mdn(sub_id, iccid=iccid)
        await helix.cancel(sub_id, iccid=iccid)

    consumer = AIOKafkaConsumer(
        f"{prefix}helix.calls",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + 15
        while len(records) < len(carrier.emitted) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            records += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()

    assert len(records) == len(carrier.emitted) >= 8
    raw = b"\n".join(r.value + b"".join(k.encode() + v for k, v in r.headers) for r in records)
    tokens = list(carrier.world.tokens)
    assert len(tokens) == 2
    for secret in [GRANT_PASSWORD, CLIENT_ID, *tokens]:
        assert secret.encode() not in raw
    assert b'"password":"***"' in raw
    assert b'"access_token":"***"' in raw
    assert {r.key for r in records} == {iccid.encode(), b"token"}
