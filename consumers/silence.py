"""Inbound activity: sms.received → when each SIM last received an SMS; a silent SIM's next SMS
→ sim.inbound_resumed.

Reads ``sms.inbound`` (group ``silence``, in batches: the topic carries every SMS of the fleet).
The SIM an SMS reached is the ICCID the gateway reported, else the SIM holding the receiving
number, else the SIM last reported in the receiving port (as ``inbound_sms_resolved`` decides).
Writes ``sim_silence`` (migration 0060): ``last_sms_at`` per SIM, which the scheduler's silence
sweep (``producers/silence_sweep.py``) reads to decide who is silent.

One transaction per batch: first every touched row is upserted (and so locked, in ICCID order),
then the rows that are silent are resumed and their ``sim.inbound_resumed`` emitted before the
commit. The sweep marks a row silent only under the same row lock and only if no SMS came after
the quiet it measured, so a silence is never announced over an SMS this flow has recorded, and
every announced silence is resumed by the first SMS after it. A redelivered batch finds the rows
receiving and emits nothing; the resumed id is over the silence, so a crash before the commit
re-emits the same event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter

from events.sim import SimInboundResumed
from events.sms import SmsReceived
from events.topics import SMS_INBOUND
from infra.bus import Bus
from infra.context import MessageDep
from infra.dead_letters import DeadLetters, apply_isolating, decode_wanted, observe_batch
from infra.deps import BusDep, ClockDep, PoolDep
from infra.kafka import GATHER_BYTES, consume_batches
from infra.settings import Settings

CONSUMER = "silence"
PRODUCER = "simfleet/silence"
# each SMS's SIM; per SIM its newest SMS of the batch
RESOLVE = """
SELECT DISTINCT ON (sim) sim AS iccid, message_id, at FROM (
    SELECT coalesce(
               x.iccid,
               (SELECT s.iccid FROM sims s WHERE s.current_number = x.to_number
                ORDER BY s.updated_at DESC LIMIT 1),
               (SELECT gp.iccid FROM gateway_ports gp
                WHERE gp.gateway_id = x.gateway_id AND gp.port = x.port)) AS sim,
           x.message_id, x.at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
         AS x(message_id, iccid, to_number, gateway_id, port, at)
) r
WHERE sim IS NOT NULL
ORDER BY sim, at DESC
"""
TOUCH = """
INSERT INTO sim_silence (iccid, last_sms_at, last_message_id, updated_at)
SELECT i, t, m, $4 FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS x(i, t, m)
ON CONFLICT (iccid) DO UPDATE
SET last_message_id = CASE
        WHEN sim_silence.last_sms_at IS NULL OR EXCLUDED.last_sms_at >= sim_silence.last_sms_at
        THEN EXCLUDED.last_message_id ELSE sim_silence.last_message_id END,
    last_sms_at = greatest(sim_silence.last_sms_at, EXCLUDED.last_sms_at),
    updated_at = EXCLUDED.updated_at
"""
# an SMS older than the quiet the sweep measured (a redelivered batch) resumes nothing
RESUME = """
UPDATE sim_silence SET state = 'receiving', resumed_at = last_sms_at, updated_at = $2
WHERE iccid = ANY($1::text[]) AND state = 'silent' AND last_sms_at > silent_since
RETURNING iccid, silent_event_id, silent_since, last_sms_at, last_message_id
"""
log = structlog.get_logger("simfleet.silence")


async def record_activity(
    pool: asyncpg.Pool, bus: Bus, batch: list[SmsReceived], now: datetime
) -> list[SimInboundResumed]:
    """Records the batch's SMS per SIM; resumes (and announces) the SIMs that were silent."""
    if not batch:
        return []
    async with pool.acquire() as conn, conn.transaction():
        seen = await conn.fetch(
            RESOLVE,
            [s.id for s in batch],
            [s.data.iccid for s in batch],
            [s.data.to for s in batch],
            [s.data.gateway_id for s in batch],
            [s.data.port for s in batch],
            [s.time for s in batch],
        )
        if not seen:
            return []
        iccids = [r["iccid"] for r in seen]  # in ICCID order: the sweep locks in that order too
        await conn.execute(
            TOUCH, iccids, [r["at"] for r in seen], [r["message_id"] for r in seen], now
        )
        resumed = [resumed_event(r, now) for r in await conn.fetch(RESUME, iccids, now)]
        await bus.emit_many(resumed)  # inside the transaction: see the module docstring
    for event in resumed:
        log.info("sim_inbound_resumed", iccid=event.data.iccid, since=event.data.silent_since)
    return resumed


def resumed_event(row: asyncpg.Record, now: datetime) -> SimInboundResumed:
    return SimInboundResumed.create(
        producer=PRODUCER, time=now, correlationid=row["silent_event_id"],
        iccid=row["iccid"], silent_event_id=row["silent_event_id"],
        silent_since=row["silent_since"], message_id=row["last_message_id"],
        resumed_at=row["last_sms_at"],
    )  # fmt: skip


def build_router(settings: Settings) -> KafkaRouter:
    router = KafkaRouter()
    # nobody waits on a SIM's activity: batches as large as half a second brings
    subscriber = consume_batches(
        router, settings.kafka, (SMS_INBOUND,), CONSUMER, gather_bytes=GATHER_BYTES
    )
    subscriber(on_sms_for_silence)
    return router


async def on_sms_for_silence(msg: MessageDep, pool: PoolDep, bus: BusDep, clock: ClockDep) -> None:
    records = cast(tuple[ConsumerRecord[Any, Any], ...], msg.raw_message)
    dead = DeadLetters(bus, CONSUMER)

    async def record(batch: list[SmsReceived]) -> None:
        await record_activity(pool, bus, batch, clock.now())

    await apply_isolating(await received(records, dead), record, dead)
    observe_batch(msg, records)


async def received(
    records: tuple[ConsumerRecord[Any, Any], ...], dead: DeadLetters
) -> list[tuple[ConsumerRecord[Any, Any], SmsReceived]]:
    wanted = (SmsReceived.event_type(),)
    found = await decode_wanted(records, wanted, dead)
    return [(record, cast(SmsReceived, event)) for record, event in found]
