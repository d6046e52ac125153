"""The physical reference for the projection benchmarks: a raw asyncpg COPY of the same rows.

The rows a projection of the backlog writes into ``inbound_sms`` are copied, in one
``copy_records_to_table``, into a table of the same shape (``LIKE inbound_sms INCLUDING ALL``:
the same columns, defaults and every index) in a schema of its own, so the figure is what
Postgres and asyncpg can do on this machine in this run, with nothing of simfleet around it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from events.sms import SmsReceived

SCHEMA = "bench_copy_reference"
COLUMNS = (
    "message_id",
    "received_at",
    "gateway_id",
    "port",
    "sender",
    "to_number",
    "iccid",
    "body",
)


@dataclass(frozen=True)
class CopyFigure:
    rows: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def inbound_rows(values: Sequence[bytes]) -> list[tuple[Any, ...]]:
    """The ``inbound_sms`` rows of encoded ``sms.received`` events, made before the clock runs."""
    rows = []
    for value in values:
        event = SmsReceived.model_validate_json(value)
        d = event.data
        rows.append(
            (event.id, d.received_at, d.gateway_id, d.port, d.sender, d.to, d.iccid, d.body)
        )
    return rows


async def raw_copy(dsn: str, rows: list[tuple[Any, ...]]) -> CopyFigure:
    """Seconds one COPY of ``rows`` takes into a fresh table shaped like ``inbound_sms``."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}; "
            f"CREATE TABLE {SCHEMA}.inbound_sms (LIKE public.inbound_sms INCLUDING ALL)"
        )
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table(
                "inbound_sms", schema_name=SCHEMA, columns=COLUMNS, records=rows
            )
        took = time.perf_counter() - started
        await conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
    finally:
        await conn.close()
    return CopyFigure(len(rows), took)


def ratio_row(
    benchmark: str, rate: float, reference: CopyFigure, target: float, **labels: object
) -> dict[str, object]:
    ratio = rate / reference.rows_per_s
    return {
        "benchmark": benchmark,
        "value": f"{100 * ratio:.1f}",
        "unit": "% of raw COPY",
        "target": f">= {100 * target:.0f}%",
        "detail": f"{rate:,.0f} events/s against {reference.rows_per_s:,.0f} COPY rows/s "
        f"({reference.rows:,} rows in {reference.seconds:.2f} s, one copy_records_to_table into "
        "a table LIKE inbound_sms INCLUDING ALL); met " + ("yes" if ratio >= target else "no"),
        **labels,
    }


def broker_label() -> str:
    """Which broker the benchmark ran on, as far as the module can tell (the harness may
    label the row itself)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ.get("BENCH_BROKER", "configured")
    return os.environ.get("BENCH_BROKER", "tansu")
