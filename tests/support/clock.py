"""The tests' one clock (``infra.clock.Clock``): frozen at ``at``, or, without it, the system's
time; either moved on by ``ahead``, which a test sets or ``advance``s to make time pass that it
skips (days in an instant)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass
class ControlledClock:
    at: datetime | None = None
    ahead: timedelta = timedelta(0)

    def now(self) -> datetime:
        return (self.at or datetime.now(UTC)) + self.ahead

    def advance(self, by: timedelta) -> None:
        self.ahead += by
