"""Inbound SMS: ``sms.received`` → ``inbound_sms`` (one row per message id).

Reads topic ``sms.inbound``. Delivery reports are archived, not projected here.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from events.sms import SmsReceived
from events.topics import SMS_INBOUND, Topic
from projections.runner import Record

INSERT_SMS = """
INSERT INTO inbound_sms (message_id, received_at, gateway_id, port, sender, to_number, iccid, body)
SELECT * FROM unnest(
    $1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[])
ON CONFLICT (message_id) DO NOTHING
"""


class InboundSmsProjection:
    name = "inbound_sms"
    topics: tuple[Topic, ...] = (SMS_INBOUND,)
    tables: tuple[str, ...] = ("inbound_sms",)

    async def apply(self, conn: asyncpg.Connection, records: Sequence[Record]) -> None:
        sms = [r.event for r in records if isinstance(r.event, SmsReceived)]
        if not sms:
            return
        await conn.execute(
            INSERT_SMS,
            [e.id for e in sms],
            [e.data.received_at for e in sms],
            [e.data.gateway_id for e in sms],
            [e.data.port for e in sms],
            [e.data.sender for e in sms],
            [e.data.to for e in sms],
            [e.data.iccid for e in sms],
            [e.data.body for e in sms],
        )
