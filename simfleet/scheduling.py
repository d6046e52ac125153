"""The scheduler process's service: every clock-driven round (``simfleet/sweeps.py``) under one
supervision, and the operational alerts with where they are sent."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx

from alerting import checks as alert_checks
from alerting import rotation_checks as rotation_alerts
from alerting.incidents import Alerts
from consumers.webhooks import endpoint_health
from infra.alert_sink import AlertSink, LogSink, SlackSink
from infra.kafka_lag import meter_for
from producers.scheduler import Scheduler
from projections import overview_queries
from simfleet import sweeps
from simfleet.app import Runtime, supervised


@contextlib.asynccontextmanager
async def scheduler_service(rt: Runtime) -> AsyncIterator[str]:
    helix = rt.helix
    if helix is None:
        raise RuntimeError("the scheduler needs the Helix client")
    hx = rt.settings.helix
    scheduler = Scheduler(rt.pool, rt.bus, rt.clock, rt.settings)
    every_verification_sweep = rt.settings.rotation.verification_sweep_s
    every_alert_round = rt.settings.alerts.interval_s
    async with alert_sink(rt) as sink:
        prefix = rt.settings.kafka.topic_prefix.rstrip(".")
        alerts = Alerts(
            rt.pool, sink, rt.clock, alert_checks_for(rt),
            label=f"simfleet {prefix}" if prefix else "simfleet",
        )  # fmt: skip
        # every clock-driven round of the scheduler process, with its period: simfleet/sweeps.py
        every = sweeps.scheduled(
            rt, scheduler, helix=helix, tracker=health_tracker(rt), alerts=alerts
        )
        loops = (scheduler.every(sweep.period_s, sweep.round) for sweep in every)
        async with supervised(rt, "scheduler", *loops):
            yield (
                f"verification sweep every {every_verification_sweep:g}s, "
                f"rotation daily at {rt.settings.rotation.at}, finalize sweep every "
                f"{hx.finalize_sweep_s:g}s, silence sweep every "
                f"{rt.settings.silence.sweep_s:g}s, alerts every {every_alert_round:g}s"
            )


def health_tracker(rt: Runtime) -> endpoint_health.HealthTracker:
    return endpoint_health.tracker_for(rt.settings, pool=rt.pool, bus=rt.bus, clock=rt.clock)


@contextlib.asynccontextmanager
async def alert_sink(rt: Runtime) -> AsyncIterator[AlertSink]:
    url = rt.settings.alerts.webhook_url
    if url is None or not url.get_secret_value():
        yield LogSink()
        return
    async with httpx.AsyncClient(timeout=rt.settings.alerts.timeout_s) as client:
        secrets = [v for v in rt.settings.secret_values().values() if v]
        yield SlackSink(client, url.get_secret_value(), secrets)


def alert_checks_for(rt: Runtime) -> list[alert_checks.Check]:
    """The operational checks; each is independent (add one by appending it)."""
    a = rt.settings.alerts
    window = timedelta(seconds=a.window_s)

    async def lag(_now: datetime) -> dict[str, float] | None:
        return await meter_for(rt.endpoints.kafka_bootstrap, rt.settings.kafka).lags()

    async def silent(_now: datetime) -> int:
        return await overview_queries.silent_sim_count(rt.pool)

    return [
        alert_checks.DisabledEndpoints(rt.pool),
        alert_checks.verification_failures(
            rt.pool, window=window, min_samples=a.min_samples, threshold=a.verification_failure_rate
        ),
        alert_checks.helix_errors(
            rt.pool, window=window, min_samples=a.min_samples, threshold=a.helix_error_rate
        ),
        alert_checks.consumer_lag(lag, a.consumer_lag),
        alert_checks.silent_sims(silent, a.silent_sims),
        rotation_alerts.RotationPaused(rt.pool),
        rotation_alerts.RotationIncomplete(rt.pool),
    ]
