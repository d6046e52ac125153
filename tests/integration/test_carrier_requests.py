"""Re-running a carrier action never breaks a live line: an activation queued or in flight is not
requested again, "already active" finds the line and finalizes the SIM, SIMs in ``error`` are
reachable, and a retryable failure is retried with backoff, then handed to an operator.

Real broker, real Postgres, the Helix sandbox over real HTTP.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import asyncpg
import pytest

from consumers.carrier_retries import resend_due
from events.envelope import Event
from events.sim import (
    NumberAssigned,
    SimActivated,
    SimActivationFailed,
    SimActivationRequested,
    SimCancelFailed,
    SimCancelRequested,
    SimOperatorNeeded,
)
from infra.actors import SYSTEM
from infra.settings import Settings
from producers.commands import Commands
from sandbox.helix import HelixFaults
from sandbox.helix_world import HelixWorld, make_iccid, make_imei
from tests.support.eventually import eventually
from tests.support.fleet import CLIENT_ID, GRANT_PASSWORD, USERNAME, Fleet, running_fleet

pytestmark = pytest.mark.integration

E = TypeVar("E", bound=Event)
FleetFactory = Callable[..., contextlib.AbstractAsyncContextManager[Fleet]]


def carrier(number_delay_s: float = 0.2) -> HelixWorld:
    return HelixWorld(
        client_id=CLIENT_ID, username=USERNAME, password=GRANT_PASSWORD,
        number_delay_s=number_delay_s,
    )  # fmt: skip


@pytest.fixture
def fleet(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> FleetFactory:
    def start(
        world: HelixWorld | None = None, **helix: object
    ) -> contextlib.AbstractAsyncContextManager[Fleet]:
        return running_fleet(settings, kafka_bootstrap, database_url, world or carrier(), **helix)

    return start


async def of_type(f: Fleet, kind: type[E]) -> list[E]:
    return [e for e in await f.events() if isinstance(e, kind)]


def waiting_after(failures: int) -> Callable[[asyncpg.Record], bool]:
    def holds(row: asyncpg.Record) -> bool:
        return row is not None and row["failures"] == failures and row["state"] == "waiting"

    return holds


async def active_with(f: Fleet, iccid: str) -> str:
    row = await eventually(
        lambda: f.sim(iccid),
        until=lambda r: r is not None and r["status"] == "active" and r["current_number"],
        within=20,
    )
    return str(row["current_number"])


async def test_already_active_at_the_carrier_finds_the_line_and_finalizes_the_sim(
    fleet: FleetFactory,
) -> None:
    elsewhere, lost = make_iccid(6101), make_iccid(6102)
    async with fleet() as f:
        # a line activated outside simfleet (another tool, the original system)
        line = f.world.activate({"service": {"iccid": elsewhere, "imei": make_imei(6101)}})
        f.world.details({"mobilitySubscriptionId": line.subscription_id})
        await f.import_csv(f"iccid,imei\n{elsewhere},{make_imei(6101)}\n")
        number = await active_with(f, elsewhere)
        assert number == f"+1{line.phone_number}"
        assert (await f.sim(elsewhere))["mobility_subscription_id"] == str(line.subscription_id)

        # asked again for a SIM that is live: the line is found, the SIM keeps its number
        again = SimActivationRequested.create(
            producer="simfleet/test", time=f.clock.now(), iccid=elsewhere,
            imei=make_imei(6101), ref="again",
        )  # fmt: skip
        await f.bus.emit(again)
        await eventually(lambda: of_type(f, SimActivated), until=lambda es: len(es) == 2)
        await eventually(  # the finalizer has looked at both
            lambda: f.pool.fetchval(
                "SELECT count(*) FROM consumer_effects WHERE consumer = 'finalizer'"
            ),
            until=lambda n: n == 2,
        )
        row = await f.sim(elsewhere)
        assert (row["status"], row["current_number"]) == ("active", number)
        assigned = [e for e in await of_type(f, NumberAssigned) if e.data.iccid == elsewhere]
        assert len(assigned) == 1  # not assigned (and verified) a second time

        # our own activation whose answer was lost: the retry hears "already active"
        f.sandbox.switch(
            "timeouts",
            HelixFaults(
                fraction=1.0, limit=1, operations=frozenset({"activation"}),
                hang_after_processing=True, hang_s=5.0,
            ),
        )  # fmt: skip
        await f.import_csv(f"iccid,imei\n{lost},{make_imei(6102)}\n")
        await active_with(f, lost)
        assert f.world.activations[lost] == 1
        assert f.world.activations[elsewhere] == 1
        assert await of_type(f, SimActivationFailed) == []
        assert (await f.sim(lost))["last_error"] is None
        assert await f.dead_letters() == 0


async def test_an_activation_queued_or_in_flight_is_not_requested_again(
    fleet: FleetFactory,
) -> None:
    iccid = make_iccid(6201)
    async with fleet() as f:
        commands = Commands(f.pool, f.bus, f.clock)
        slow = HelixFaults(latency_s=1.5, operations=frozenset({"activation"}))
        f.sandbox.switch("slow", slow)
        await f.import_csv(f"iccid,imei\n{iccid},{make_imei(6201)}\n")
        await eventually(
            lambda: f.sim(iccid),
            until=lambda r: r is not None and r["activation_requested_at"] is not None,
        )

        by_run = await commands.run("activate", 25, "run:BULK_RUN_SECRET")
        by_button = await commands.request("activate", [iccid], "dashboard:op")
        assert by_run.event_ids == by_button.event_ids == ()
        assert "queued or in flight" in by_button.skipped[0].reason

        await active_with(f, iccid)
        assert f.world.activations[iccid] == 1
        assert len(await of_type(f, SimActivationRequested)) == 1
        row = await f.sim(iccid)
        assert row["activation_requested_at"] is None  # the outcome ended the wait


async def test_an_error_sim_is_reached_by_finalize_and_its_line_found(
    fleet: FleetFactory,
) -> None:
    iccid = make_iccid(6301)
    async with fleet() as f:
        line = f.world.activate({"service": {"iccid": iccid, "imei": make_imei(6301)}})
        # as "already active" used to leave a SIM: error, no subscription id
        await f.pool.execute(
            "INSERT INTO sims (iccid, imei, status, last_error) VALUES ($1, $2, 'error', $3)",
            iccid, make_imei(6301), "ICCID already has an active subscription",
        )  # fmt: skip
        commands = Commands(f.pool, f.bus, f.clock)
        asked = await commands.request("finalize", [iccid], "dashboard:op")
        assert len(asked.event_ids) == 1

        number = await active_with(f, iccid)
        assert number == f"+1{line.phone_number}"
        assert (await f.sim(iccid))["mobility_subscription_id"] == str(line.subscription_id)
        assert f.world.activations[iccid] == 1
        assert len(await of_type(f, SimActivated)) == 1


async def test_a_retryable_failure_is_retried_with_backoff_then_needs_an_operator(
    fleet: FleetFactory,
) -> None:
    iccid = make_iccid(6401)
    # the line never gets a number in this test: a cancel needs one, so it fails retryably
    async with fleet(
        carrier(number_delay_s=3600), number_wait_s=0.2, request_max_attempts=3,
        request_retry_delay_s=60,
    ) as f:  # fmt: skip
        await f.import_csv(f"iccid,imei\n{iccid},{make_imei(6401)}\n")
        await eventually(
            lambda: f.sim(iccid), until=lambda r: r is not None and r["status"] == "provisioning"
        )
        cancel = SimCancelRequested.create(
            producer="simfleet/test", time=f.clock.now(), iccid=iccid, ref="op:cancel",
            requested_by="dashboard:op", reason="line returned",
        )  # fmt: skip
        await f.bus.emit(cancel)

        async def retry_row() -> asyncpg.Record:
            return await f.pool.fetchrow("SELECT * FROM carrier_retries WHERE iccid = $1", iccid)

        waits = []
        for attempt in (1, 2):
            row = await eventually(retry_row, until=waiting_after(attempt))
            waits.append(row["next_retry_at"] - row["updated_at"])
            assert await resend_due(f.pool, f.bus, f.clock.now()) == 0  # not due yet
            later = row["next_retry_at"] + timedelta(seconds=1)
            assert await resend_due(f.pool, f.bus, later) == 1
        assert waits == [timedelta(seconds=60), timedelta(seconds=120)]  # doubling

        needed = await eventually(lambda: of_type(f, SimOperatorNeeded), until=bool)
        assert [(e.data.action, e.data.attempts) for e in needed] == [("cancel", 3)]
        row = await eventually(lambda: f.sim(iccid), until=lambda r: r["operator_needed"])
        assert row["operator_needed_action"] == "cancel"
        assert "no number yet" in row["operator_needed"]
        requests = await of_type(f, SimCancelRequested)
        assert [r.data.ref for r in requests] == [
            "op:cancel",
            "op:cancel:retry-2",
            "op:cancel:retry-3",
        ]
        assert {r.data.requested_by for r in requests[1:]} == {SYSTEM}
        assert len(await of_type(f, SimCancelFailed)) == 3
        far = f.clock.now() + timedelta(days=30)
        assert await resend_due(f.pool, f.bus, far) == 0  # given up: the operator decides
        state = await f.pool.fetchval("SELECT state FROM carrier_retries WHERE iccid = $1", iccid)
        assert state == "operator"
