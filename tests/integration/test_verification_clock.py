"""Verification by the clock of the SMS (real broker and Postgres, the sandboxes): a reply counts
by the time the gateway received it, so a reply consumer that falls behind its topic never fails
a number that answered in time, and the scheduler does not time out a verification whose reply
may still be waiting in Kafka."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta

import pytest

from consumers.verification import consumer as verification
from consumers.verification.reply_backlog import ReplyBacklog
from consumers.verification.sweeps import VerificationSweeps
from events.sim import NumberOnline, NumberVerificationFailed, VerificationSent
from events.sms import SmsReceived
from infra.bus import Bus
from infra.clock import Clock
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import Settings, VerificationSettings
from sandbox.gateways import GatewayFaults
from tests.support.clock import ControlledClock
from tests.support.eventually import eventually
from tests.support.number_world import NumberWorld, rotation_settings, running_numbers

pytestmark = pytest.mark.integration

EXPIRY_S = 120.0  # the default: 2 minutes from the send
LATER = timedelta(minutes=10)


async def test_a_lagging_reply_consumer_never_fails_a_number_that_answered_in_time(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> None:
    def world(clock: Clock | None = None) -> contextlib.AbstractAsyncContextManager[NumberWorld]:
        return running_numbers(
            settings, kafka_bootstrap, database_url, flows=(verification,), clock=clock,
            rotation_config=rotation_settings(verification_expiry_s=EXPIRY_S),
            verification_config=VerificationSettings(retries=0),
        )  # fmt: skip

    # the codes go out; both SMS are lost on the way
    async with world() as w:
        await w.add_sim(9601)
        answers, silent = (
            await w.add_sim(9602, verified=False),
            await w.add_sim(9603, verified=False),
        )
        w.network.switch("lossy", GatewayFaults(numbers=frozenset({answers.number, silent.number})))
        await w.emit(w.assigned(answers), w.assigned(silent))
        sent = {e.data.iccid: e.data for e in await w.wait_for(VerificationSent, count_is(2))}
        await eventually(
            lambda: w.pool.fetchval("SELECT count(*) FROM verifications WHERE state = 'sent'"),
            until=lambda n: n == 2,
        )
        configured = w.settings
    # every consumer is down: the reply the gateway received in time waits in Kafka
    code = sent[answers.iccid]
    reply = SmsReceived.create(
        producer="simfleet/gateway-bridge", time=code.sent_at, gateway_id=answers.gateway_id,
        port=answers.port, sender="+15550009999", to=answers.number, iccid=answers.iccid,
        body=f"VERIFY {code.code}", received_at=code.sent_at + timedelta(seconds=1),
    )  # fmt: skip
    broker = build_broker(configured.kafka, kafka_bootstrap)
    await broker.start()
    pool = await create_pool(database_url)
    try:
        await Bus(broker, settings.kafka.topic_prefix).emit(reply)
        replies = ReplyBacklog(kafka_bootstrap, settings.kafka)
        unread = await replies.oldest_unread()
        assert unread is not None
        assert unread.since is not None
        assert unread.since < code.expires_at
        # long past the expiry by the scheduler's clock; the reply is unread: nothing expires
        later = ControlledClock(ahead=LATER)
        bus = Bus(broker, settings.kafka.topic_prefix)
        sweeper = VerificationSweeps(pool, bus, later, configured, replies=replies)
        assert await sweeper.expire_verifications() == 0
        states = "SELECT array_agg(DISTINCT state) FROM verifications"
        assert await pool.fetchval(states) == ["sent"]

        # the consumer comes back, minutes late by its own clock: the reply counts by its time
        async with world(ControlledClock(ahead=LATER)) as w:
            (online,) = await w.wait_for(NumberOnline)
            assert (online.data.iccid, online.data.number) == (answers.iccid, answers.number)
            assert online.time > code.expires_at
            # read to the end now: the verification nobody answered times out, and only it
            await eventually(replies.oldest_unread, until=lambda u: u is not None and not u.since)
            assert await sweeper.expire_verifications() == 1
            (failed,) = await w.wait_for(NumberVerificationFailed)
            assert failed.data.iccid == silent.iccid
    finally:
        await pool.close()
        await broker.stop()


def count_is(n: int) -> Callable[[list[VerificationSent]], bool]:
    return lambda found: len(found) == n
