"""Provisioning: the carrier-side flows on ``sim.lifecycle``, in one consumer group.

Activation, finalizer, canceller and number sync each handle their own request types (their
modules say how). They share one subscriber — consumer group ``provisioning`` — because a
consumer group reads every event of its topic whether it wants it or not: as four groups, each
SIM cost four deliveries and four offset commits per lifecycle event for one useful handling,
which made those groups the bulk of the provisioning CPU (bench/bench_provisioning.py: 2,000 SIMs
took 34 s as four groups, 16 s with two of them removed).

Partitions run concurrently (up to ``HX_CONCURRENCY``), each in order, so a SIM's events are
handled one at a time across the flows. The price: while the finalizer waits (bounded by
``HX_NUMBER_WAIT_S``) for a number, the requests behind it on that partition wait too.
"""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from consumers import activation, canceller, finalizer, number_sync
from consumers.dlq import DeadLetterMiddleware
from events.topics import SIM_LIFECYCLE
from infra.kafka import consume
from infra.settings import Settings

GROUP = "provisioning"


def build_router(settings: Settings) -> KafkaRouter:
    router = KafkaRouter(middlewares=(DeadLetterMiddleware,))
    lifecycle = consume(
        router, settings.kafka, SIM_LIFECYCLE, GROUP, max_workers=settings.helix.concurrency
    )
    activation.register(lifecycle)
    finalizer.register(lifecycle, settings)
    canceller.register(lifecycle)
    number_sync.register(lifecycle)

    @lifecycle
    async def ignore_other_types() -> None:
        """Every other sim.lifecycle event belongs to another group."""

    return router
