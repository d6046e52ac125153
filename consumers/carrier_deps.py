"""What the provisioning handlers need, built once per batch by consumers/provisioning.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from consumers.carrier_retries import RequestRetries
from infra.clock import Clock
from infra.helix import HelixClient
from infra.kafka import Bus


@dataclass(frozen=True)
class CarrierDeps:
    helix: HelixClient
    bus: Bus
    pool: asyncpg.Pool
    clock: Clock
    number_delays: tuple[float, ...]  # the finalizer's bounded wait for a new line's number
    retries: RequestRetries = field(
        default_factory=RequestRetries
    )  # retryable failures: backoff, then an operator
