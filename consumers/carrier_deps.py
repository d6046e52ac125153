"""What the provisioning handlers need, built once per batch by consumers/provisioning.py."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

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
