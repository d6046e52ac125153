"""SIM provisioning end to end: sheet → activation → number → status changes → sync.

Real broker, real Postgres, the Helix sandbox over real HTTP; outcomes read from the ``sims``
table, the topics and the sandbox's own counters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from consumers import provisioning
from consumers.finalizer import sweep_unfinalized
from consumers.number_sync import request_sync
from events.sim import (
    NumberAssigned,
    SimCancelFailed,
    SimCancelled,
    SimCancelRequested,
    SimRestoreRequested,
    SimStatusChangeFailed,
    SimSuspendRequested,
)
from events.topics import HELIX_CALLS, SIM_LIFECYCLE
from infra.settings import Settings
from projections import replay
from projections.sims import SimsProjection
from sandbox.helix import HelixFaults, HelixSandbox
from sandbox.helix_world import HelixWorld, make_iccid, make_imei
from tests.support.clock import ControlledClock
from tests.support.eventually import eventually
from tests.support.fleet import CLIENT_ID, GRANT_PASSWORD, USERNAME, Fleet, running_fleet
from tests.support.positions import group_caught_up

pytestmark = pytest.mark.integration

FleetFactory = Callable[..., contextlib.AbstractAsyncContextManager[Fleet]]


def world(number_delay_s: float = 0.3) -> HelixWorld:
    return HelixWorld(
        client_id=CLIENT_ID,
        username=USERNAME,
        password=GRANT_PASSWORD,
        number_delay_s=number_delay_s,
    )


@pytest.fixture
def fleet(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> FleetFactory:
    def start(
        carrier: HelixWorld | None = None, **helix: object
    ) -> contextlib.AbstractAsyncContextManager[Fleet]:
        return running_fleet(settings, kafka_bootstrap, database_url, carrier or world(), **helix)

    return start


def sheet_of_200_with_5_bad_rows() -> tuple[str, list[str]]:
    lines = ["iccid,imei,reseller_id,status"]
    good = []
    for i in range(1, 196):
        iccid = make_iccid(1000 + i)
        lines.append(f"{iccid},{make_imei(1000 + i)},{'acme' if i % 3 else ''},pending")
        good.append(iccid)
    bad_iccid = make_iccid(2001)
    bad_imei = make_imei(2002)
    lines += [
        f"{bad_iccid[:-1]}{(int(bad_iccid[-1]) + 1) % 10},{make_imei(2001)},,",  # Luhn
        f"{make_iccid(2002)},{bad_imei[:-1]}{(int(bad_imei[-1]) + 1) % 10},,",  # Luhn
        f"{make_iccid(2003)[:12]},{make_imei(2003)},,",  # too short
        f"{make_iccid(2004)},,,",  # no IMEI
        f"8.90126E+19,{make_imei(2005)},,",  # a spreadsheet's doing
    ]
    return "\n".join(lines) + "\n", good


async def all_active_with_numbers(fleet: Fleet, iccids: list[str], within: float) -> None:
    async def active() -> int:
        return int(
            await fleet.pool.fetchval(
                "SELECT count(*) FROM sims WHERE status = 'active' AND current_number IS NOT NULL "
                "AND iccid = ANY($1::text[])",
                iccids,
            )
        )

    await eventually(active, until=lambda n: n == len(iccids), within=within, interval=0.2)


async def test_a_sheet_of_200_with_5_bad_rows_ends_with_195_active_sims_and_reimport_adds_nothing(
    fleet: FleetFactory,
) -> None:
    text, good = sheet_of_200_with_5_bad_rows()
    async with fleet() as f:
        report = await f.import_csv(text)
        assert len(report.accepted) == 195
        assert sorted(i.line for i in report.parsed.rejected) == [197, 198, 199, 200, 201]
        await all_active_with_numbers(f, good, within=60)

        numbers = await f.pool.fetch("SELECT iccid, e164, valid_to FROM sim_numbers")
        assert len(numbers) == 195
        assert all(n["valid_to"] is None for n in numbers)
        assert await f.pool.fetchval("SELECT count(*) FROM sims WHERE reseller_id = 'acme'") == 130
        assert set(f.world.activations.values()) == {1}
        assert len(f.world.activations) == 195

        before = await f.records()
        ids_before = {e.id for e in await f.events()}
        calls_before = Counter(f.world.calls)
        again = await f.import_csv(text)
        # the same ids again, and one re-emitted outcome per request and per activation
        grown = len(before) + len(again.event_ids) + 2 * 195
        await eventually(f.records, until=lambda rs: len(rs) >= grown, within=30)
        await eventually(
            lambda: f.projected("sims", SIM_LIFECYCLE), until=lambda n: n >= grown, within=15
        )
        # the provisioning group has handled every request, the re-imported ones included
        await group_caught_up(f.bootstrap, f.settings.kafka, provisioning.GROUP, SIM_LIFECYCLE)
        after = await f.records()

        assert len(after) == grown
        assert {e.id for e in await f.events()} == ids_before
        assert f.world.calls == calls_before  # not one carrier call
        await all_active_with_numbers(f, good, within=1)
        assert await f.dead_letters() == 0
        await assert_no_secret_on_the_audit_trail(f)


async def assert_no_secret_on_the_audit_trail(f: Fleet) -> None:
    records = await f.records(HELIX_CALLS)
    await eventually(
        lambda: f.projected("helix_log", HELIX_CALLS), until=lambda n: n >= len(records)
    )
    rows = await f.pool.fetch(
        "SELECT concat_ws(' ', operation, url, request_body::text, response_body::text, error) "
        "AS row FROM helix_api_logs"
    )
    assert len(rows) == len(records) >= 1 + 195 + 195  # token, activations, details
    on_topic = b"\n".join(r.value + b"".join(v for _, v in r.headers) for r in records)
    in_table = "\n".join(r["row"] for r in rows)
    for secret in (GRANT_PASSWORD, CLIENT_ID, *f.world.tokens):
        assert secret.encode() not in on_topic
        assert secret not in in_table
    assert '"password": "***"' in in_table


@contextlib.asynccontextmanager
async def faults_alternating(sandbox: HelixSandbox) -> AsyncIterator[None]:
    """~20 % of calls answer 5xx, with bursts of 429 + Retry-After in between."""

    async def alternate() -> None:
        for seed in range(1_000_000):
            sandbox.switch("flaky_5xx", HelixFaults(fraction=0.2, seed=seed))
            await asyncio.sleep(0.3)
            sandbox.switch("rate_limited", HelixFaults(fraction=0.2, retry_after_s=1, seed=seed))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(alternate())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sandbox.switch("happy")


async def test_a_flaky_rate_limited_carrier_still_activates_each_sim_exactly_once(
    fleet: FleetFactory,
) -> None:
    text, good = sheet_of_200_with_5_bad_rows()
    async with fleet() as f:
        async with faults_alternating(f.sandbox):
            await f.import_csv(text)
            await all_active_with_numbers(f, good, within=75)

        assert f.world.activations == Counter(dict.fromkeys(good, 1))
        statuses = [r["status_code"] for r in await f.pool.fetch("SELECT * FROM helix_api_logs")]
        assert sum(1 for s in statuses if s is not None and s >= 500) > 20
        assert 429 in statuses
        assert await f.dead_letters() == 0


async def test_suspend_restore_and_cancel_reach_the_carrier_and_the_sims_table(
    fleet: FleetFactory, database_url: str
) -> None:
    lines = [make_iccid(3001 + i) for i in range(3)]
    text = "iccid,imei\n" + "".join(f"{c},{make_imei(3001 + i)}\n" for i, c in enumerate(lines))
    async with fleet() as f:
        await f.import_csv(text)
        await all_active_with_numbers(f, lines, within=20)
        first, second, _ = lines

        await request(f, SimSuspendRequested, first, "op:suspend")
        await status_becomes(f, first, "suspended", "SUSPENDED")
        await request(f, SimRestoreRequested, first, "op:restore")
        await status_becomes(f, first, "active", "ACTIVE")
        old_number = (await f.sim(second))["current_number"]
        await request(f, SimCancelRequested, second, "op:cancel-1")
        await status_becomes(f, second, "cancelled", "CANCELED")
        await request(f, SimCancelRequested, second, "op:cancel-2")  # already cancelled: done

        cancelled = await eventually(
            f.events, until=lambda es: sum(isinstance(e, SimCancelled) for e in es) == 2
        )
        assert {e.data.number for e in cancelled if isinstance(e, SimCancelled)} == {old_number}
        [closed] = await f.pool.fetch("SELECT valid_to FROM sim_numbers WHERE iccid = $1", second)
        assert closed["valid_to"] is not None
        assert (await f.sim(second))["last_error"] is None

        f.sandbox.switch("rejects_activation", HelixFaults(fraction=1.0))
        refused = make_iccid(3100)
        await f.import_csv(f"iccid,imei\n{refused},{make_imei(3100)}\n")
        row = await eventually(
            lambda: f.sim(refused), until=lambda r: r is not None and r["status"] == "error"
        )
        assert row["last_error"] == "Address verification failed"
        assert f.world.activations[refused] == 0
        assert await f.dead_letters() == 0
        assert await replayed_differences(f, database_url) == []


async def replayed_differences(f: Fleet, database_url: str) -> list[str]:
    """The sims tables rebuilt from offset 0 into fresh tables, compared row by row."""
    total = len(await f.records())
    await eventually(lambda: f.projected("sims", SIM_LIFECYCLE), until=lambda n: n == total)
    return await replay.rebuild(
        SimsProjection(),
        dsn=database_url,
        live_pool=f.pool,
        bus=f.bus,
        bootstrap=f.bootstrap,
        kafka=f.settings.kafka,
        from_archive=False,
        swap=False,
        progress=lambda _done, _total: None,
    )


Request = type[SimCancelRequested | SimSuspendRequested | SimRestoreRequested]


async def request(f: Fleet, kind: Request, iccid: str, ref: str) -> None:
    await f.bus.emit(
        kind.create(producer="simfleet/test", time=f.clock.now(), iccid=iccid, ref=ref)
    )


async def status_becomes(f: Fleet, iccid: str, ours: str, carriers: str) -> None:
    await eventually(lambda: f.sim(iccid), until=lambda r: r["status"] == ours)
    sub = f.world.subscriber_by_iccid(iccid)
    assert sub is not None
    assert sub.status == carriers


async def test_sync_assigns_a_number_only_where_the_carrier_drifted(fleet: FleetFactory) -> None:
    lines = [make_iccid(4001 + i) for i in range(3)]
    text = "iccid,imei\n" + "".join(f"{c},{make_imei(4001 + i)}\n" for i, c in enumerate(lines))
    async with fleet() as f:
        await f.import_csv(text)
        await all_active_with_numbers(f, lines, within=20)
        details_before = f.world.calls["details"]

        assert await request_sync(f.pool, f.bus, f.clock) == 3
        await eventually(lambda: synced(f), until=lambda n: n == details_before + 3)
        drifted = lines[0]
        old = (await f.sim(drifted))["current_number"]
        f.world.force_mdn(drifted, "9175550123")
        assert await request_sync(f.pool, f.bus, ControlledClock(ahead=timedelta(hours=1))) == 3

        row = await eventually(
            lambda: f.sim(drifted), until=lambda r: r["current_number"] == "+19175550123"
        )
        await eventually(lambda: synced(f), until=lambda n: n == details_before + 6)
        await group_caught_up(f.bootstrap, f.settings.kafka, provisioning.GROUP, SIM_LIFECYCLE)
        synced_numbers = [
            e for e in await f.events() if isinstance(e, NumberAssigned) and e.data.source == "sync"
        ]
        assert [(e.data.iccid, e.data.previous_number) for e in synced_numbers] == [(drifted, old)]
        assert row["number_status"] == "pending"  # a new number is verified again
        history = await f.pool.fetch(
            "SELECT e164, valid_to FROM sim_numbers WHERE iccid = $1 ORDER BY valid_from", drifted
        )
        assert [(h["e164"], h["valid_to"] is None) for h in history] == [
            (old, False),
            ("+19175550123", True),
        ]


async def synced(f: Fleet) -> int:
    return f.world.calls["details"]


async def test_a_number_later_than_the_finalizers_wait_is_found_by_the_sweep(
    fleet: FleetFactory,
) -> None:
    iccid = make_iccid(5001)
    async with fleet(world(2.0), number_wait_s=0.3, number_poll_s=0.1) as f:
        await f.import_csv(f"iccid,imei\n{iccid},{make_imei(5001)}\n")
        waiting = await eventually(
            lambda: f.sim(iccid), until=lambda r: r is not None and r["status"] == "provisioning"
        )
        assert waiting["current_number"] is None
        assert await sweep_unfinalized(f.pool, f.bus, f.helix, f.clock) == 0  # still no number

        await asyncio.sleep(2.0)
        assert await sweep_unfinalized(f.pool, f.bus, f.helix, f.clock) == 1

        row = await eventually(lambda: f.sim(iccid), until=lambda r: r["status"] == "active")
        assigned = [e for e in await f.events() if isinstance(e, NumberAssigned)]
        assert [(e.data.source, e.data.request_id) for e in assigned] == [
            ("activation", row["activation_id"])
        ]
        # the Helix log names the run of each call: the handled event's, else the sweep's
        calls = [e.data for e in await f.events(HELIX_CALLS) if e.data.operation != "token"]
        runs = {c.run_id.split(":")[0] if c.run_id else None for c in calls}
        assert None not in runs
        assert "finalize-sweep" in runs


async def test_a_status_change_the_carrier_cannot_make_ends_as_a_failure_event(
    fleet: FleetFactory,
) -> None:
    """A SIM without a carrier subscription (its activation was refused) cannot be cancelled,
    suspended or restored: each request ends with its failure event, saying why."""
    async with fleet() as f:
        f.sandbox.switch("rejects_activation", HelixFaults(fraction=1.0))
        refused = make_iccid(3200)
        await f.import_csv(f"iccid,imei\n{refused},{make_imei(3200)}\n")
        await eventually(
            lambda: f.sim(refused), until=lambda r: r is not None and r["status"] == "error"
        )
        await request(f, SimSuspendRequested, refused, "op:suspend-unprovisioned")
        await request(f, SimCancelRequested, refused, "op:cancel-unprovisioned")

        def failures(events: list[Any]) -> list[Any]:
            return [e for e in events if isinstance(e, SimCancelFailed | SimStatusChangeFailed)]

        found = await eventually(f.events, until=lambda es: len(failures(es)) == 2)
        cancel = next(e for e in failures(found) if isinstance(e, SimCancelFailed))
        suspend = next(e for e in failures(found) if isinstance(e, SimStatusChangeFailed))
        assert suspend.data.action == "suspend"
        for failure in (cancel, suspend):
            assert failure.data.reason == "the SIM has no carrier subscription"
            assert failure.data.retryable is False
        assert f.world.activations[refused] == 0
        assert await f.dead_letters() == 0
