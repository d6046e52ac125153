"""The sandbox carrier finds a line by subscription id or ICCID from its index, as it found it by
walking every line: same lines, same order, a re-activated ICCID's lines both found."""

from __future__ import annotations

from sandbox.helix_world import HelixWorld, make_iccid, make_imei


def activate(world: HelixWorld, serial: int) -> int:
    body = {"service": {"iccid": make_iccid(serial), "imei": make_imei(serial)}}
    return world.activate(body).subscription_id


def ids(rows: list[dict[str, object]]) -> list[str]:
    return [str(row["mobilitySubscriptionId"]) for row in rows]


def test_details_by_subscription_id_and_iccid() -> None:
    world = HelixWorld()
    first, second = activate(world, 1), activate(world, 2)
    assert ids(world.details({"mobilitySubscriptionId": first})) == [str(first)]
    assert ids(world.details({"mobilitySubscriptionId": str(second)})) == [str(second)]
    assert ids(world.details({"iccid": make_iccid(2)})) == [str(second)]
    assert world.details({"mobilitySubscriptionId": f"0{first}"}) == []
    assert world.details({"mobilitySubscriptionId": "nope"}) == []
    assert world.details({"iccid": make_iccid(3)}) == []


def test_a_reactivated_iccid_shows_every_line_oldest_first() -> None:
    world = HelixWorld()
    old = activate(world, 1)
    world.subscribers[old].status = "CANCELED"
    activate(world, 2)
    new = activate(world, 1)
    assert ids(world.details({"iccid": make_iccid(1)})) == [str(old), str(new)]
    assert world.subscriber_by_iccid(make_iccid(1)) is world.subscribers[new]
    # a query naming both keys: each line once, in the order the lines were made
    both = {"mobilitySubscriptionId": new, "iccid": make_iccid(1)}
    assert ids(world.details(both)) == [str(old), str(new)]


def test_restored_lines_are_found_by_iccid_and_number() -> None:
    world = HelixWorld()
    world.restore(90001, make_iccid(7), make_imei(7), "+16465550123")
    assert ids(world.details({"iccid": make_iccid(7)})) == ["90001"]
    assert ids(world.details({"subscriberNumber": "6465550123"})) == ["90001"]
    assert world.subscriber_by_iccid(make_iccid(7)) is world.subscribers[90001]
