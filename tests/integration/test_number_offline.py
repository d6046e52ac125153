"""A number leaving a reseller is told to it: ``number.offline`` on rotation (with the number that
replaces it), cancellation and reassignment, through the real webhook consumer, broker, Postgres
and the sandbox receiver checking signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from consumers.webhooks.rules import number_left
from events.sim import MdnChanged, NumberAssigned, NumberOnline, SimCancelled
from infra.settings import Settings
from tests.support.eventually import eventually
from tests.support.webhook_world import World, webhook_world

pytestmark = pytest.mark.integration

ICCID = "8901260000000000077"
OLD, NEW = "+15559870077", "+15559870078"
T0 = datetime(2026, 2, 4, 5, 0, 30, tzinfo=UTC)
CLAIMED = "SELECT count(*) FROM webhook_claims WHERE event_type = 'number.offline'"


@pytest.fixture
async def world(
    settings: Settings, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[World]:
    async with webhook_world(settings, kafka_bootstrap) as world:
        yield world


def types_in_order(world: World, endpoint_id: str) -> list[str]:
    return [d.payload["event_type"] for d in world.receiver.received(endpoint_id) if d.accepted]


async def test_a_rotated_number_goes_offline_with_its_replacement_before_the_new_one_is_online(
    world: World,
) -> None:
    await world.reseller("acme", {"acme-main": "ok"})
    sim_id = await world.sim(ICCID, OLD, "acme", mobility_subscription_id="38106")
    changed = MdnChanged.create(
        producer="simfleet/rotation", time=T0, iccid=ICCID, request_id="rotate-1",
        old_number=OLD, new_number=NEW, mobility_subscription_id="38106",
    )  # fmt: skip
    online = NumberOnline.create(
        producer="simfleet/verification", time=T0 + timedelta(seconds=20), iccid=ICCID,
        number=NEW, request_id="verify-1", mobility_subscription_id="38106",
        online_until=T0 + timedelta(days=1),
    )  # fmt: skip

    async with world.consumer():
        await world.publish([changed, changed])  # a redelivered cause tells it once
        await eventually(lambda: world.pool.fetchval(CLAIMED))
        await world.publish([online])  # once the new number answered its verification SMS
        got = await world.receiver.wait_for(2, timeout=15)

    assert all(d.signature_valid for d in got)
    assert types_in_order(world, "acme-main") == ["number.offline", "number.online"]
    left = number_left(changed)
    assert left is not None
    assert got[0].webhook_id == left.message_id
    assert got[0].payload == {
        "event_type": "number.offline",
        "message_id": left.message_id,
        "created_at": "2026-02-04T05:00:30Z",
        "data": {
            "sim_id": sim_id, "iccid": ICCID, "number": OLD, "online": False,
            "reason": "rotation", "replaced_by": NEW, "offline_since": "2026-02-04T05:00:30Z",
            "mobilitySubscriptionId": 38106,
        },
    }  # fmt: skip
    assert await world.pool.fetchval(CLAIMED) == 1


async def test_a_cancelled_line_tells_its_number_offline_without_a_replacement(
    world: World,
) -> None:
    await world.reseller("acme", {"acme-main": "ok"})
    await world.sim(ICCID, OLD, "acme")
    cancelled = SimCancelled.create(
        producer="simfleet/canceller", time=T0, iccid=ICCID, request_id="cancel-1",
        mobility_subscription_id="38106", number=OLD,
    )  # fmt: skip

    async with world.consumer():
        await world.publish([cancelled])
        got = await world.receiver.wait_for(2, timeout=15)

    by_type = {d.payload["event_type"]: d.payload["data"] for d in got}
    assert set(by_type) == {"number.offline", "sim.cancelled"}
    assert (by_type["number.offline"]["number"], by_type["number.offline"]["reason"]) == (
        OLD,
        "cancellation",
    )
    assert by_type["number.offline"]["replaced_by"] is None


async def test_a_sim_assigned_to_another_reseller_takes_its_number_offline_for_the_first(
    world: World,
) -> None:
    await world.reseller("acme", {"acme-main": "ok"})
    await world.reseller("globex", {"globex-main": "ok"})
    sim_id = await world.sim(ICCID, OLD, "acme")

    async with world.consumer():
        moved = await world.commands.assign_sims("globex", [ICCID], "test")
        assert moved.assigned == [ICCID]
        got = await world.receiver.wait_for(1, timeout=15, endpoint_id="acme-main")

    assert got[0].payload["event_type"] == "number.offline"
    assert got[0].payload["data"] == {
        "sim_id": sim_id, "iccid": ICCID, "number": OLD, "online": False,
        "reason": "reassignment", "replaced_by": None,
        "offline_since": got[0].payload["created_at"], "mobilitySubscriptionId": 38106,
    }  # fmt: skip
    assert types_in_order(world, "globex-main") == []


async def test_a_number_the_carrier_changed_goes_offline_once_sync_finds_it(world: World) -> None:
    await world.reseller("acme", {"acme-main": "ok"})
    await world.sim(ICCID, OLD, "acme")
    drift = NumberAssigned.create(
        producer="simfleet/number-sync", time=T0, iccid=ICCID, request_id="sync-1",
        number=NEW, source="sync", previous_number=OLD, mobility_subscription_id="38106",
    )  # fmt: skip
    rotated = NumberAssigned.create(  # told by its mdn.changed, not again
        producer="simfleet/rotation", time=T0, iccid=ICCID, request_id="rotate-2",
        number=NEW, source="rotation", previous_number=OLD, mobility_subscription_id="38106",
    )  # fmt: skip

    async with world.consumer():
        await world.publish([drift, rotated])
        got = await world.receiver.wait_for(1, timeout=15)
        await eventually(lambda: world.pool.fetchval(CLAIMED))

    assert (got[0].payload["data"]["reason"], got[0].payload["data"]["replaced_by"]) == (
        "carrier_change",
        NEW,
    )
    assert await world.pool.fetchval(CLAIMED) == 1
