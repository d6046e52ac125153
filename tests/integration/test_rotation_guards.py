"""Rotation that survives a bad day: a SIM the carrier keeps refusing is parked for an operator,
a failing carrier pauses rotation fleet-wide until its calls succeed again (with an alert each
way), and every day reports how many SIMs were due, rotated, failed and parked.

Real broker, real Postgres, the Helix sandbox and the sandbox gateways over real HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta

import pytest
import structlog

from alerting.incidents import Alerts
from alerting.rotation_checks import RotationIncomplete, RotationPaused
from events.sim import MdnChanged, MdnChangeFailed, MdnChangeRequested, SimOperatorNeeded
from infra.alert_sink import LogSink
from infra.settings import Settings
from producers import rotation_days
from sandbox.helix import HelixFaults
from tests.support.clock import ControlledClock
from tests.support.eventually import eventually
from tests.support.number_world import NumberWorld, at_utc, rotation_settings, running_numbers

pytestmark = pytest.mark.integration


async def test_a_sim_refused_again_and_again_is_parked_and_the_day_reports_it(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> None:
    config = rotation_settings(spread_s=1800, retry_delay_s=1, max_attempts=4, park_after=2)
    day_one, day_two = ControlledClock(at_utc(1, 5, 31)), ControlledClock(at_utc(2, 5, 31))
    async with running_numbers(
        settings, kafka_bootstrap, database_url, rotation_config=config
    ) as w:
        _fine, stuck = await w.add_sim(8101), await w.add_sim(8102)
        scheduler = await w.scheduler(day_one)
        with structlog.testing.capture_logs() as logs:
            for refusals in (1, 2):
                w.carrier.reject_next_mdn_change(stuck.iccid, "Subscriber has a pending order")
                assert await scheduler.request_rotations() == (2 if refusals == 1 else 1)
                await w.wait_for(MdnChangeFailed, until=distinct(refusals))
                await eventually(streak_of(w, stuck.iccid), until=equal_to(refusals))
            (parked,) = await w.wait_for(SimOperatorNeeded)
            assert (parked.data.iccid, parked.data.action, parked.data.attempts) == (
                stuck.iccid,
                "rotate",
                2,
            )
            row = await eventually(
                lambda: w.pool.fetchrow("SELECT * FROM sims WHERE iccid = $1", stuck.iccid),
                until=lambda r: r["operator_needed_action"] == "rotate",
            )
            assert "pending order" in row["operator_needed"]

            # parked: its retries (2 of 4 attempts left) and the next day's rotation are not asked
            await w.wait_for(MdnChanged)
            assert await scheduler.request_rotations() == 0
            next_day = await w.scheduler(day_two)
            assert await next_day.request_rotations() == 1
            requests = await w.events(MdnChangeRequested)
            assert [r.data.iccid for r in requests].count(stuck.iccid) == 2
        # day two may be reported too: its one rotation can end before its tick has finished
        reports = [
            e
            for e in logs
            if e["event"] == "rotation_day_report" and e["day"] == day_one.now().date().isoformat()
        ]
        assert [
            (r["day"], r["due"], r["rotated"], r["failed"], r["parked"], r["log_level"])
            for r in reports
        ] == [(day_one.now().date().isoformat(), 2, 1, 1, 1, "warning")]
        (day,) = [d for d in await rotation_days.recent(w.pool) if d.day == day_one.now().date()]
        assert (day.due, day.requested, day.rotated, day.failed, day.parked) == (2, 2, 1, 1, 1)
        (finding,) = await RotationIncomplete(w.pool).findings(day_two.now())
        assert "1 of 2 due SIMs rotated" in finding.summary

        # an operator's rotation that succeeds unparks the SIM
        await w.emit(
            MdnChangeRequested.create(
                producer="simfleet/commands", time=w.clock.now(), iccid=stuck.iccid, ref="op-1"
            )
        )
        await eventually(
            lambda: w.pool.fetchrow("SELECT * FROM sims WHERE iccid = $1", stuck.iccid),
            until=lambda r: r["operator_needed"] is None,
        )
        assert (
            await w.pool.fetchval(
                "SELECT parked_at FROM rotation_streaks WHERE iccid = $1", stuck.iccid
            )
            is None
        )


async def test_a_failing_carrier_pauses_rotation_fleet_wide_until_calls_succeed_again(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> None:
    # the day's slots all came a minute ago, on the real clock the breaker reads calls by
    started = datetime.now(UTC) - timedelta(minutes=2)
    config = rotation_settings(
        at=time(started.hour, started.minute), spread_s=30, retry_delay_s=0.05, max_attempts=20,
        breaker_min_calls=5, breaker_error_rate=0.5, breaker_window_s=300, breaker_close_after=2,
    )  # fmt: skip
    async with running_numbers(
        settings, kafka_bootstrap, database_url, rotation_config=config, helix_log=True
    ) as w:
        assert w.carrier_sandbox is not None
        sims = [await w.add_sim(8201 + i) for i in range(3)]
        scheduler = await w.scheduler()
        alerts = Alerts(w.pool, LogSink(), w.clock, [RotationPaused(w.pool)])
        # the carrier fails every MDN change (each tried 10 times by the client)
        w.carrier_sandbox.switch(
            "flaky_5xx", HelixFaults(fraction=1.0, operations=frozenset({"mdn_change"}))
        )

        assert await scheduler.request_rotations() == 3  # closed: nobody failed yet
        # a rebalance may redeliver a request: its failure is re-emitted under the same id
        await w.wait_for(MdnChangeFailed, until=distinct(3), within=60)
        await eventually(
            lambda: w.pool.fetchval("SELECT count(*) FROM helix_api_logs WHERE NOT ok"),
            until=lambda n: n >= 3 * 10,
            within=30,
        )
        with structlog.testing.capture_logs() as logs:
            # open: the failed rotations wait; one of them is let through as a probe each tick
            assert await scheduler.request_rotations() == 1
        assert [e["event"] for e in logs if e["event"].startswith("rotation_")] == [
            "rotation_paused"
        ]
        await alerts.evaluate()
        opened = await w.pool.fetchrow(
            "SELECT * FROM alert_incidents WHERE check_name = 'rotation_paused'"
        )
        assert opened["resolved_at"] is None
        assert "paused fleet-wide" in opened["summary"]
        assert "carrier calls failed" in opened["summary"]
        await w.wait_for(MdnChangeFailed, until=distinct(4), within=60)

        w.carrier_sandbox.switch("happy")

        async def tick() -> int:
            await scheduler.request_rotations()
            return len({e.data.iccid for e in await w.events(MdnChanged)})

        # probes succeed, the breaker closes by itself, the rest follow
        await eventually(tick, until=lambda n: n == 3, within=90, interval=0.3)
        requests = {e.id for e in await w.events(MdnChangeRequested)}
        assert len(requests) <= 3 + 1 + 3  # every SIM once, the first probe, one retry each
        await alerts.evaluate()
        resolved = await w.pool.fetchrow(
            "SELECT * FROM alert_incidents WHERE check_name = 'rotation_paused'"
        )
        assert resolved["resolved_at"] is not None
        assert {s.iccid for s in sims} == {e.data.iccid for e in await w.events(MdnChanged)}
        assert (
            await w.pool.fetchval("SELECT count(*) FROM rotation_streaks WHERE refusals > 0") == 0
        )


def distinct(n: int) -> Callable[[list[MdnChangeFailed]], bool]:
    """``n`` failures; a redelivered request re-emits its failure under the same id."""
    return lambda events: len({e.id for e in events}) == n


def equal_to(n: int) -> Callable[[int | None], bool]:
    return lambda value: value == n


def streak_of(w: NumberWorld, iccid: str) -> Callable[[], Awaitable[int | None]]:
    async def refusals() -> int | None:
        found: int | None = await w.pool.fetchval(
            "SELECT refusals FROM rotation_streaks WHERE iccid = $1", iccid
        )
        return found

    return refusals
