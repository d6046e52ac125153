"""The reseller API end to end: tokens issued by an operator → the token projection → a
reseller reading its own SIMs, SMS and deliveries (every attempt) and managing its endpoints
through ``/reseller/v1``, the webhook consumer delivering to the sandbox receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from alerting.checks import DisabledEndpoints
from events.topics import RESELLER_REGISTRY
from infra.settings import ResellerApiSettings, Settings
from producers.reseller_commands import CommandRejected
from tests.support.eventually import eventually
from tests.support.portal_world import PortalWorld, portal_world
from tests.support.webhook_world import World, sms

pytestmark = pytest.mark.integration

ICCID = "8901260000000000001"
NUMBER = "+15559870001"


@pytest.fixture
async def portal(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[PortalWorld]:
    async with portal_world(settings, kafka_bootstrap) as portal:
        yield portal


async def numbered_sim(world: World, iccid: str, number: str, reseller_id: str) -> None:
    """A SIM assigned to the reseller, its number verified (as the sims projection leaves it)."""
    await world.sim(iccid, number, reseller_id)
    since = datetime.now(UTC) - timedelta(hours=1)
    await world.pool.execute("UPDATE sims SET number_status = 'verified' WHERE iccid = $1", iccid)
    await world.pool.execute(
        "INSERT INTO sim_numbers (assignment_id, iccid, e164, source, valid_from, "
        "verification_status, verified_at) VALUES ($1, $2, $3, 'activation', $4, 'verified', $4)",
        f"a-{iccid}", iccid, number, since,
    )  # fmt: skip


async def test_tokens_are_shown_once_kept_hashed_scoped_revocable_and_audited(
    portal: PortalWorld,
) -> None:
    world = portal.world
    await world.reseller("acme", {})
    reader = await portal.token("acme", "dashboards", "read")
    writer = await portal.token("acme", "billing", "read-write")
    with pytest.raises(CommandRejected, match="live token named"):
        await portal.tokens.issue("acme", "billing", "read", 1, "cli:test-operator")
    assert reader.token not in repr(reader)

    async with portal.client(reader.token) as as_reader, portal.client(writer.token) as as_writer:
        assert (await as_reader.get("/sims")).status_code == 200
        refused = await as_reader.post("/endpoints", json={"url": world.url("x")})
        assert refused.status_code == 403
        added = await as_writer.post("/endpoints", json={"url": world.url("new")})
        assert added.status_code == 201, added.text
        assert added.headers["cache-control"] == "no-store"
        assert added.json()["secret"].startswith("whsec_")
        async with portal.client() as anonymous, portal.client("sfr_" + "x" * 43) as forged:
            for client in (anonymous, forged):
                answer = await client.get("/sims")
                assert answer.status_code == 401
                assert answer.headers["www-authenticate"] == "Bearer"

        await portal.tokens.revoke("acme", reader.token_id, "cli:test-operator", "left")
        await eventually(lambda: as_reader.get("/sims"), until=lambda r: r.status_code == 401)
        assert (await as_writer.get("/sims")).status_code == 200

    short = await portal.token("acme", "short-lived", "read", days=2 / 86400)
    async with portal.client(short.token) as as_short:
        await eventually(
            lambda: as_short.get("/sims"), until=lambda r: r.status_code == 401, within=5
        )

    used = {t.name: t.last_used_at for t in await portal.tokens.tokens("acme")}
    assert used["billing"] is not None  # the operator sees which tokens live
    unused = await portal.token("acme", "never-used", "read")
    assert {t.token_id: t.last_used_at for t in await portal.tokens.tokens("acme")}[
        unused.token_id
    ] is None
    stored = await world.pool.fetchval("SELECT string_agg(t::text, ' ') FROM reseller_tokens t")
    published = b" ".join(await world.published(RESELLER_REGISTRY)).decode()
    assert "reseller.token_issued" in published
    for token in (reader.token, writer.token, short.token):
        assert token not in stored
        assert token not in published
    audit = await eventually(
        lambda: world.pool.fetch("SELECT action, actor, target FROM operator_audit"),
        until=lambda rows: {"add-endpoint", "revoke-token"} <= {r["action"] for r in rows},
    )
    actions = {(r["action"], r["actor"]) for r in audit}
    assert ("add-endpoint", "reseller:acme/billing") in actions
    assert ("issue-token", "cli:test-operator") in actions
    assert ("revoke-token", "cli:test-operator") in actions


async def test_a_reseller_reads_its_sims_sms_and_every_attempt_of_a_delivery(
    portal: PortalWorld,
) -> None:
    world = portal.world
    await world.reseller("acme", {"main": "500_then_ok"}, failures=2)
    await numbered_sim(world, ICCID, NUMBER, "acme")
    token = await portal.token("acme", "ops", "read")
    texts = [sms(NUMBER, f"code {n}") for n in range(3)]

    async with world.consumer():
        await world.publish(texts)
        await world.receiver.wait_for(3, timeout=30, endpoint_id="main")

    async with portal.client(token.token) as api:
        [sim] = (await api.get("/sims")).json()
        assert (sim["iccid"], sim["number"], sim["online"]) == (ICCID, NUMBER, True)
        assert sim["online_since"] is not None
        assert (await api.get(f"/numbers/{NUMBER}")).json()["iccid"] == ICCID
        assert (await api.get(f"/sims/{ICCID}")).json()["number"] == NUMBER

        sms_page = await eventually(
            lambda: api.get("/sms", params={"number": NUMBER, "limit": 2}),
            until=lambda r: len(r.json()["rows"]) == 2,
        )
        first = sms_page.json()
        rest = (await api.get("/sms", params={"number": NUMBER, "older": first["older"]})).json()
        seen = [r["message_id"] for r in first["rows"] + rest["rows"]]
        assert sorted(seen) == sorted(t.id for t in texts)
        assert (await api.get("/sms", params={"number": "+15550000000"})).json()["rows"] == []
        later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        assert (await api.get("/sms", params={"since": later})).json()["rows"] == []
        assert (await api.get(f"/sms/{texts[0].id}")).json()["body"] == "code 0"

        page = await eventually(
            lambda: api.get("/deliveries"),
            until=lambda r: (
                len(r.json()["rows"]) == 3
                and all(d["status"] == "delivered" for d in r.json()["rows"])
            ),
        )
        rows = page.json()["rows"]
        assert sum(d["attempts"] for d in rows) == 5  # the receiver failed two attempts in all
        retried = max(rows, key=lambda d: d["attempts"])
        detail = await eventually(
            lambda: api.get(f"/deliveries/{retried['id']}"),
            until=lambda r: len(r.json()["attempts"]) == retried["attempts"],
        )
    attempts = detail.json()["attempts"]
    failed = retried["attempts"] - 1
    assert failed >= 1
    assert [a["status_code"] for a in attempts] == [500] * failed + [200]
    assert [a["succeeded"] for a in attempts] == [False] * failed + [True]
    assert all(a["latency_ms"] is not None and a["latency_ms"] >= 0 for a in attempts)
    assert attempts[0]["response"] == '{"ok":false}'
    assert attempts[-1]["response"] == '{"ok":true}'


async def test_a_reseller_pauses_resumes_recovers_rotates_tests_and_removes_its_endpoint(
    portal: PortalWorld,
) -> None:
    world = portal.world
    await world.reseller("acme", {"main": "ok"})
    await numbered_sim(world, ICCID, NUMBER, "acme")
    token = await portal.token("acme", "ops")
    before = datetime.now(UTC) - timedelta(seconds=5)

    async with world.consumer(), portal.client(token.token) as api:
        assert (await api.post("/endpoints/main/pause")).status_code == 202
        endpoint = await eventually(
            lambda: api.get("/endpoints/main"), until=lambda r: not r.json()["enabled"]
        )
        assert endpoint.json()["disabled_reason"] == "paused by reseller:acme/ops"
        # the reseller's own decision: no operator alert for it
        assert await DisabledEndpoints(world.pool).findings(datetime.now(UTC)) == []
        paused = sms(NUMBER, "while paused")
        await world.publish([paused])
        await eventually(lambda: world.pool.fetchval(
            "SELECT state FROM webhook_claims WHERE message_id = $1", paused.id),
            until=lambda state: state == "skipped")  # fmt: skip
        assert world.receiver.ids("main") == []

        resumed = await api.post("/endpoints/main/resume", json={"redeliver": False})
        assert resumed.status_code == 202, resumed.text
        await eventually(lambda: api.get("/endpoints/main"), until=lambda r: r.json()["enabled"])
        recovered = await api.post("/recover", json={"since": before.isoformat()})
        assert recovered.status_code == 202, recovered.text
        await world.receiver.wait_for(1, timeout=30, endpoint_id="main")
        await eventually(lambda: world.pool.fetchval(
            "SELECT state FROM webhook_claims WHERE message_id = $1", paused.id),
            until=lambda state: state == "delivered")  # fmt: skip
        # recovered once: a second recover finds nothing failed or skipped
        await api.post("/recover", json={"since": before.isoformat(), "endpoint_id": "main"})
        rotated = await api.post("/endpoints/main/rotate-secret")
        assert rotated.status_code == 200
        assert rotated.headers["cache-control"] == "no-store"
        await eventually(lambda: world.pool.fetchval(
            "SELECT previous_sealed_secret FROM reseller_webhooks WHERE endpoint_id = 'main'"))  # fmt: skip

        # the receiver knows only the new secret now; the test event carries both signatures
        world.receiver.register("main", rotated.json()["secret"])
        tested = (await api.post("/endpoints/main/test")).json()
        assert (tested["outcome"], tested["status_code"], tested["answer"]) == (
            "delivered",
            200,
            '{"ok":true}',
        )
        sent = world.receiver.received("main")[-1]
        assert (sent.webhook_id, sent.signature_valid) == (tested["message_id"], True)
        assert sent.payload["event_type"] == "webhook.test"
        world.receiver.set_mode("main", "fail_500")
        failing = (await api.post("/endpoints/main/test")).json()
        assert (failing["status_code"], failing["answer"]) == (500, '{"ok":false}')

        removed = await api.delete("/endpoints/main")
        assert removed.status_code == 202
        await eventually(lambda: api.get("/endpoints"), until=lambda r: r.json() == [])
    assert world.receiver.ids("main").count(paused.id) == 1


async def test_a_token_past_its_budget_gets_429_with_retry_after(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> None:
    tight = ResellerApiSettings(rate_per_s=0.5, burst=3)
    async with portal_world(settings, kafka_bootstrap, tight) as portal:
        await portal.world.reseller("acme", {})
        first = await portal.token("acme", "busy", "read")
        second = await portal.token("acme", "calm", "read")
        async with portal.client(first.token) as busy, portal.client(second.token) as calm:
            answers = [(await busy.get("/sims")).status_code for _ in range(4)]
            limited = await busy.get("/endpoints")
            assert (await calm.get("/sims")).status_code == 200
    assert answers == [200, 200, 200, 429]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
