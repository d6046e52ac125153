"""Every clock-driven sweep of simfleet, with its period: the one list to read.

``scheduled`` is what the scheduler process (``simfleet scheduler``) runs: one supervised loop a
sweep, a round now and then one every period (``Scheduler.every``: a round that fails because
Postgres or the broker is away is tried again next period; any other failure stops the process).
Every round is safe to run in several scheduler processes at once: what it acts on is claimed
under a row lock or a unique key. Each sweep's code lives with the flow whose tables it changes;
this list only names them, in the order they first run:

| sweep | period (setting, default) | code |
|---|---|---|
| daily rotations and their retries | ``ROTATION_TICK_S`` (60 s) | ``producers/scheduler.py`` |
| silent SIMs | ``SILENCE_SWEEP_S`` (5 min) | ``producers/silence_sweep.py`` |
| retention clean-up | ``ROTATION_CLEANUP_INTERVAL_S`` (1 h) | ``producers/scheduler.py``, ``producers/retention.py`` |
| expired verifications | ``ROTATION_VERIFICATION_SWEEP_S`` (30 s) | ``consumers/verification/sweeps.py`` |
| deferred verifications | ``ROTATION_VERIFICATION_SWEEP_S`` (30 s) | ``consumers/verification/sweeps.py`` |
| verifications waiting for a sender | ``ROTATION_VERIFICATION_SWEEP_S`` (30 s) | ``consumers/verification/sweeps.py`` |
| lines still without a number | ``HX_FINALIZE_SWEEP_S`` (5 min) | ``consumers/finalizer.py`` |
| carrier sync requests | ``HX_SYNC_INTERVAL_S`` (1 h) | ``consumers/number_sync.py`` |
| carrier retries due | ``ROTATION_TICK_S`` (60 s) | ``consumers/carrier_retries.py`` |
| endpoints failing too long | ``ALERT_INTERVAL_S`` (60 s) | ``consumers/webhooks/endpoint_health.py`` |
| alert checks and messages | ``ALERT_INTERVAL_S`` (60 s) | ``alerting/incidents.py`` |

Three clocks run elsewhere, in the process whose memory they work on:

- the webhook dispatcher's sweeper (``WEBHOOK_SWEEP_INTERVAL_S``, 5 s), in ``simfleet workers
  webhooks``: claims whose owner went quiet, scheduled retries come due
  (``consumers/webhooks/dispatch.py``);
- the reseller token-use flush (``RESELLER_API_USE_FLUSH_S``, 30 s), in the dashboard process,
  which serves the reseller API and portal (``producers/token_uses.py``);
- the console summary line (``SIMFLEET_SUMMARY_INTERVAL_S``, 60 s), in every simfleet process
  (``infra/console_summary.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from alerting.incidents import Alerts
from consumers import carrier_retries, finalizer, number_sync
from consumers.verification.reply_backlog import ReplyBacklog
from consumers.verification.sweeps import VerificationSweeps
from consumers.webhooks import endpoint_health
from infra.helix.client import HelixClient
from producers.scheduler import Scheduler
from simfleet.app import Runtime


@dataclass(frozen=True)
class Sweep:
    name: str
    period_s: float
    round: Callable[[], Awaitable[int]]  # one round; returns how much it did


def scheduled(
    rt: Runtime,
    scheduler: Scheduler,
    *,
    helix: HelixClient,
    tracker: endpoint_health.HealthTracker,
    alerts: Alerts,
) -> tuple[Sweep, ...]:
    """Every sweep the scheduler process runs, with its period: the rows of the table above."""
    s = rt.settings
    replies = ReplyBacklog(rt.endpoints.kafka_bootstrap, s.kafka)
    verifications = VerificationSweeps(rt.pool, rt.bus, rt.clock, s, replies=replies)

    async def finalize_sweep() -> int:
        return await finalizer.sweep_unfinalized(rt.pool, rt.bus, helix, rt.clock)

    async def sync_round() -> int:
        return await number_sync.request_sync(rt.pool, rt.bus, rt.clock)

    async def resend_carrier_requests() -> int:
        return await carrier_retries.resend_due(rt.pool, rt.bus, rt.clock.now())

    async def disable_failing_endpoints() -> int:
        return await endpoint_health.disable_overdue(tracker)

    every_verification_sweep = s.rotation.verification_sweep_s
    return (
        Sweep("daily rotations and their retries", s.rotation.tick_s, scheduler.request_rotations),
        Sweep("silent SIMs", s.silence.sweep_s, scheduler.find_silent_sims),
        Sweep("retention clean-up", s.rotation.cleanup_interval_s, scheduler.clean_up),
        Sweep(
            "expired verifications", every_verification_sweep, verifications.expire_verifications
        ),
        Sweep("deferred verifications", every_verification_sweep, verifications.resume_deferred),
        Sweep(
            "verifications waiting for a sender",
            every_verification_sweep,
            verifications.resume_awaiting_sender,
        ),
        Sweep("lines still without a number", s.helix.finalize_sweep_s, finalize_sweep),
        Sweep("carrier sync requests", s.helix.sync_interval_s, sync_round),
        Sweep("carrier retries due", s.rotation.tick_s, resend_carrier_requests),
        Sweep("endpoints failing too long", s.alerts.interval_s, disable_failing_endpoints),
        Sweep("alert checks and messages", s.alerts.interval_s, alerts.evaluate),
    )
