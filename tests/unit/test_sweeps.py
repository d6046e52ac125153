"""The scheduler process's list of sweeps: every round, each at its own setting, as documented."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any, cast

from consumers.verification.sweeps import VerificationSweeps
from infra.clock import SystemClock
from infra.settings import (
    AlertSettings,
    HelixSettings,
    RotationSettings,
    Settings,
    SilenceSettings,
)
from producers.scheduler import Scheduler
from simfleet import sweeps

# every period differs, so a sweep run at another sweep's setting is seen
SETTINGS = Settings(
    rotation=RotationSettings(tick_s=61, verification_sweep_s=31, cleanup_interval_s=3601),
    silence=SilenceSettings(sweep_s=301),
    helix=HelixSettings(finalize_sweep_s=302, sync_interval_s=3602),
    alerts=AlertSettings(interval_s=62),
)


async def evaluate() -> int:
    return 0


def listed() -> tuple[sweeps.Sweep, ...]:
    rt = SimpleNamespace(
        settings=SETTINGS,
        pool=None,
        bus=None,
        clock=SystemClock(),
        endpoints=SimpleNamespace(kafka_bootstrap="127.0.0.1:9092"),
    )
    scheduler = Scheduler(cast(Any, None), cast(Any, None), SystemClock(), SETTINGS)
    return sweeps.scheduled(
        cast(Any, rt),
        scheduler,
        helix=cast(Any, object()),
        tracker=cast(Any, object()),
        alerts=cast(Any, SimpleNamespace(evaluate=evaluate)),
    )


def test_each_sweep_runs_at_its_own_setting() -> None:
    assert {s.name: s.period_s for s in listed()} == {
        "daily rotations and their retries": 61,
        "silent SIMs": 301,
        "retention clean-up": 3601,
        "expired verifications": 31,
        "deferred verifications": 31,
        "verifications waiting for a sender": 31,
        "lines still without a number": 302,
        "carrier sync requests": 3602,
        "carrier retries due": 61,
        "endpoints failing too long": 62,
        "alert checks and messages": 62,
    }


def test_every_round_of_the_scheduler_and_of_the_verification_sweeps_is_listed() -> None:
    scheduled = {getattr(s.round, "__func__", None) for s in listed()}
    rounds = [
        method
        for owner in (Scheduler, VerificationSweeps)
        for name, method in vars(owner).items()
        if inspect.iscoroutinefunction(method) and not name.startswith("_") and name != "every"
    ]
    assert rounds
    assert [r.__qualname__ for r in rounds if r not in scheduled] == []


def test_the_documented_table_is_the_list_in_its_order() -> None:
    doc = sweeps.__doc__ or ""
    rows = [line.split("|")[1].strip() for line in doc.splitlines() if line.startswith("| ")]
    assert rows[1:] == [s.name for s in listed()]  # the first row is the table's head
