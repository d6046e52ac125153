"""Inbound SMS: ``sms.received`` → ``inbound_sms`` (one row per message id).

Reads topic ``sms.inbound``. Delivery reports are archived, not projected here.

A batch goes in by binary COPY, the cheapest way in for rows, straight into ``inbound_sms``
under a savepoint: in a catch-up or a rebuild nearly every message is new. When one is not (the
same push published twice, a message already projected) the table's unique message id refuses
the COPY, and the batch is copied into a session-local staging table instead and moved by one
``INSERT … SELECT … ON CONFLICT DO NOTHING`` that empties the staging table as it reads it, so
a repeated message stays one row. Everything runs in the caller's transaction, the one that
records the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import assert_never, cast

import asyncpg

from events.envelope import Event
from events.sms import SmsDeliveryReported, SmsReceived
from events.topics import SMS_INBOUND, Topic
from projections.batches import Record

STAGING = "inbound_sms_batch"
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
# temporary: one per session, never seen by another; rows never outlive their transaction
CREATE_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS inbound_sms_batch (
    message_id text, received_at timestamptz, gateway_id text, port text, sender text,
    to_number text, iccid text, body text
) ON COMMIT DELETE ROWS
"""
MOVE_STAGED = """
WITH staged AS (DELETE FROM inbound_sms_batch RETURNING *)
INSERT INTO inbound_sms (message_id, received_at, gateway_id, port, sender, to_number, iccid, body)
SELECT message_id, received_at, gateway_id, port, sender, to_number, iccid, body FROM staged
ON CONFLICT (message_id) DO NOTHING
"""


# an inbound_sms row, in COLUMNS order
Row = tuple[str, datetime, str, str | None, str, str | None, str | None, str]


class InboundSmsProjection:
    name = "inbound_sms"
    topics: tuple[Topic, ...] = (SMS_INBOUND,)
    tables: tuple[str, ...] = ("inbound_sms",)
    appends_only = True  # rows only added, read back by message id alone (replay.appends_only)

    def compact(self, event: Event) -> Row | None:
        """All a record keeps of its event (``runner.Compacting``): the row, or nothing for a
        delivery report."""
        carried = cast(SmsReceived | SmsDeliveryReported, event)  # what sms.inbound carries
        match carried:
            case SmsReceived(data=d):
                return (
                    event.id, d.received_at, d.gateway_id, d.port, d.sender, d.to, d.iccid, d.body,
                )  # fmt: skip
            case SmsDeliveryReported():
                return None  # archived, not projected
            case _:
                assert_never(carried)

    def _row(self, record: Record) -> Row | None:
        kept = record.kept
        if isinstance(kept, Event):  # a whole event: a record not read by the runner
            return self.compact(kept)
        return cast(Row | None, kept)

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        rows = [row for r in records if (row := self._row(r)) is not None]
        if not rows:
            return
        try:
            async with conn.transaction():
                await conn.copy_records_to_table("inbound_sms", columns=COLUMNS, records=rows)
        except asyncpg.UniqueViolationError:
            # a message seen before: the conflict clause keeps it one row
            await conn.execute(CREATE_STAGING)
            await conn.copy_records_to_table(STAGING, columns=COLUMNS, records=rows)
            await conn.execute(MOVE_STAGED)
