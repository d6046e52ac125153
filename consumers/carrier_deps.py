"""What the provisioning handlers need, built once per batch by consumers/provisioning.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from consumers.carrier_retries import RequestRetries
from consumers.effects import Ledger
from infra.bus import Bus
from infra.clock import Clock
from infra.helix.client import HelixClient

# (iccid, action): the SIM's retry row for the action closed (a final outcome)
CloseRetry = Callable[[tuple[str, str]], Awaitable[None]]
# iccid → the SIM's (mobility subscription id, current number) in ``sims``, None: no row
HeldLine = Callable[[str], Awaitable[tuple[str | None, str | None] | None]]


@dataclass(frozen=True)
class CarrierDeps:
    helix: HelixClient
    bus: Bus
    pool: asyncpg.Pool
    clock: Clock
    number_delays: tuple[float, ...]  # the finalizer's bounded wait for a new line's number
    # the statements of the SIMs handled at the same time go to Postgres together
    ledger: Ledger
    close_retry: CloseRetry
    held_line: HeldLine
    retries: RequestRetries = field(
        default_factory=RequestRetries
    )  # retryable failures: backoff, then an operator
