"""Operational alerts: the checks of ``checks`` (and ``rotation_checks``) → incidents in Postgres → the alert sink.

Every ``ALERT_INTERVAL_S`` (a scheduler loop): each check says what is wrong now; a finding
with no open incident opens one (the unique index lets one scheduler win), an open incident
whose finding is gone is resolved. Then every incident not yet announced is sent — once when
it opens, once when it resolves — each row locked (``SKIP LOCKED``) while it is sent and marked
sent in the same transaction, so restarts and several schedulers never send it twice; a sink
that is down leaves the rows for the next round.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import structlog

from alerting.checks import Check, Finding
from infra.alert_sink import AlertSink, AlertSinkError
from infra.clock import Clock

OPEN = """
INSERT INTO alert_incidents (check_name, key, summary, opened_at)
SELECT $1, k, s, $4 FROM unnest($2::text[], $3::text[]) AS f(k, s)
ON CONFLICT (check_name, key) WHERE resolved_at IS NULL DO NOTHING
RETURNING key
"""
RESOLVE = """
UPDATE alert_incidents SET resolved_at = $3
WHERE check_name = $1 AND resolved_at IS NULL AND NOT (key = ANY($2::text[]))
RETURNING key
"""
NEXT_UNSENT = """
SELECT id, check_name, key, summary, opened_at, resolved_at, fired_sent_at
FROM alert_incidents
WHERE fired_sent_at IS NULL OR (resolved_at IS NOT NULL AND resolve_sent_at IS NULL)
ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
"""
MARK_FIRED_SENT = "UPDATE alert_incidents SET fired_sent_at = $2 WHERE id = $1"
MARK_RESOLVE_SENT = "UPDATE alert_incidents SET resolve_sent_at = $2 WHERE id = $1"
MAX_SENDS_PER_ROUND = 100

log = structlog.get_logger("simfleet.alerts")


class Alerts:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sink: AlertSink,
        clock: Clock,
        checks: Sequence[Check],
        *,
        label: str = "simfleet",
    ) -> None:
        self._pool, self._sink, self._clock = pool, sink, clock
        self.checks = list(checks)
        self._label = label  # which deployment speaks (several may share one channel)

    async def evaluate(self) -> int:
        """One round: every check, then the announcements; returns how many were sent."""
        now = self._clock.now()
        for check in self.checks:
            try:
                found = await check.findings(now)
            except Exception as err:  # one broken check must not silence the others
                log.exception("alert_check_failed", check=check.name, error=repr(err))
                continue
            if found is not None:
                await self._record(check.name, found, now)
        return await self.announce()

    async def _record(self, check: str, found: Sequence[Finding], now: datetime) -> None:
        keys, summaries = [f.key for f in found], [f.summary for f in found]
        async with self._pool.acquire() as conn, conn.transaction():
            opened = await conn.fetch(OPEN, check, keys, summaries, now)
            resolved = await conn.fetch(RESOLVE, check, keys, now)
        for row in opened:
            log.warning("alert_opened", check=check, key=row["key"])
        for row in resolved:
            log.info("alert_resolved", check=check, key=row["key"])

    async def announce(self) -> int:
        """Sends what is due, oldest first; stops at the first message the sink refuses."""
        sent = 0
        while sent < MAX_SENDS_PER_ROUND:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(NEXT_UNSENT)
                if row is None:
                    return sent
                try:
                    if row["fired_sent_at"] is None:
                        await self._sink.send(self._text("ALERT", row))
                        await conn.execute(MARK_FIRED_SENT, row["id"], self._clock.now())
                        sent += 1
                    if row["resolved_at"] is not None:
                        await self._sink.send(self._text("RESOLVED", row))
                        await conn.execute(MARK_RESOLVE_SENT, row["id"], self._clock.now())
                        sent += 1
                except AlertSinkError as err:  # what was sent stays marked (the tx commits)
                    log.warning("alert_not_sent", check=row["check_name"], error=str(err))
                    return sent
        return sent

    def _text(self, kind: str, row: asyncpg.Record) -> str:
        text = f"[{self._label}] {kind} {row['check_name']}: {row['summary']}"
        if kind == "RESOLVED":
            lasted = (row["resolved_at"] - row["opened_at"]).total_seconds()
            text += f" (open {_duration(lasted)})"
        return text


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{max(seconds, 0) / 60:.0f} min"
