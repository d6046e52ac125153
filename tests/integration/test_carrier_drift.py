"""Carrier drift both ways: number sync compares the carrier's status as well as the number,
covers suspended and error SIMs, and the dashboard says when it last ran and what it changed.

Real broker, real Postgres, the Helix sandbox over real HTTP; the dashboard served in process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from consumers.number_sync import request_sync
from dashboard.app import create_dashboard_app
from events.sim import NumberAssigned, SimActivated, SimCancelled, SimRestored, SimSuspended
from infra.settings import SecretsSettings, Settings
from projections.carrier_queries import carrier_status
from sandbox.helix_world import HelixWorld, make_iccid, make_imei
from tests.support.clock import ControlledClock
from tests.support.eventually import eventually
from tests.support.fleet import CLIENT_ID, GRANT_PASSWORD, USERNAME, Fleet, running_fleet

pytestmark = pytest.mark.integration

FleetFactory = Callable[..., contextlib.AbstractAsyncContextManager[Fleet]]
AUTH = ("operator", "carrier-Dash-pw-31")


@pytest.fixture
def fleet(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> FleetFactory:
    def start() -> contextlib.AbstractAsyncContextManager[Fleet]:
        world = HelixWorld(
            client_id=CLIENT_ID, username=USERNAME, password=GRANT_PASSWORD, number_delay_s=0.1
        )
        return running_fleet(settings, kafka_bootstrap, database_url, world)

    return start


def carrier_status_change(f: Fleet, iccid: str, state: str) -> None:
    """The carrier changes a line's status without simfleet asking."""
    codes = {"Cancel": ("CAN", 1), "Suspend": ("CR", 22), "Unsuspend": ("CR", 35)}
    line = f.world.subscriber_by_iccid(iccid)
    assert line is not None
    code, code_id = codes[state]
    ok, _ = f.world.change_status(
        {
            "subscriberNumber": line.phone_number,
            "subscriberState": state,
            "reasonCode": code,
            "reasonCodeId": code_id,
        }
    )
    assert ok


async def statuses(f: Fleet, iccids: list[str]) -> list[str]:
    rows = {r["iccid"]: r["status"] for r in await f.pool.fetch("SELECT iccid, status FROM sims")}
    return [rows.get(i, "") for i in iccids]


async def test_sync_turns_carrier_side_status_and_number_changes_into_sim_events(
    fleet: FleetFactory,
) -> None:
    cancelled, suspended, renumbered, untouched = (make_iccid(7101 + i) for i in range(4))
    lines = [cancelled, suspended, renumbered, untouched]
    text = "iccid,imei\n" + "".join(f"{c},{make_imei(7101 + i)}\n" for i, c in enumerate(lines))
    lost = make_iccid(7199)
    async with fleet() as f:
        await f.import_csv(text)
        await eventually(lambda: statuses(f, lines), until=lambda s: s == ["active"] * 4)
        # an error SIM whose line exists at the carrier (left by an "already active" answer)
        line = f.world.activate({"service": {"iccid": lost, "imei": make_imei(7199)}})
        await f.pool.execute(
            "INSERT INTO sims (iccid, status, last_error) VALUES ($1, 'error', 'already active')",
            lost,
        )
        carrier_status_change(f, cancelled, "Cancel")
        carrier_status_change(f, suspended, "Suspend")
        f.world.force_mdn(renumbered, "9175550188")

        assert await request_sync(f.pool, f.bus, f.clock) == 5  # the error SIM included
        await eventually(
            lambda: statuses(f, [*lines, lost]),
            until=lambda s: s == ["cancelled", "suspended", "active", "active", "active"],
        )
        events = await f.events()
        assert [e.data.iccid for e in events if isinstance(e, SimCancelled)] == [cancelled]
        assert [e.data.iccid for e in events if isinstance(e, SimSuspended)] == [suspended]
        synced = [e for e in events if isinstance(e, NumberAssigned) and e.data.source == "sync"]
        assert [(e.data.iccid, e.data.number) for e in synced] == [(renumbered, "+19175550188")]
        assert lost in [e.data.iccid for e in events if isinstance(e, SimActivated)]
        assert (await f.sim(lost))["mobility_subscription_id"] == str(line.subscription_id)

        # the suspended SIM is compared too: active again at the carrier → restored
        carrier_status_change(f, suspended, "Unsuspend")
        assert (
            await request_sync(f.pool, f.bus, ControlledClock(ahead=timedelta(hours=1))) == 4
        )  # cancelled: not compared
        await eventually(lambda: statuses(f, [suspended]), until=lambda s: s == ["active"])
        assert len([e for e in await f.events() if isinstance(e, SimRestored)]) == 1

        status = await eventually(
            lambda: carrier_status(f.pool),
            until=lambda s: s.last_sync is not None and s.last_sync.changes != (),
        )
        assert status.last_sync is not None
        assert status.last_sync.requested == 4
        assert [(c.change, c.n) for c in status.last_sync.changes] == [("sim.restored", 1)]
        changed = {(c.iccid, c.change) for c in status.sync_changes}
        assert changed == {
            (cancelled, "sim.cancelled"),
            (suspended, "sim.suspended"),
            (suspended, "sim.restored"),
            (renumbered, "number.assigned"),
            (lost, "sim.activated"),
        }
        page = await dashboard_page(f, "/carrier")
        assert "Last ran" in page
        assert "sim.restored: 1" in page
        assert "+19175550188" in page  # what the number changed to


async def dashboard_page(f: Fleet, path: str) -> str:
    settings = f.settings.model_copy(
        update={"secrets": SecretsSettings(dashboard_auth=SecretStr(":".join(AUTH)))}
    )
    app = create_dashboard_app(settings, f.pool, f.bus, f.clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash", auth=AUTH) as http:
        response = await http.get(path)
        assert response.status_code == 200, response.text
        return response.text
