"""Number verification end to end: a real broker and Postgres, the Helix sandbox, the sandbox
gateways and the gateway bridge over real HTTP; outcomes read from the topics, the tables the
projections keep, and the sandbox's own counters."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from consumers.verification import consumer as verification
from consumers.verification.store import is_verification_sms, verification_sms_ids
from events.sim import (
    NumberOnline,
    NumberVerificationFailed,
    VerificationRequested,
    VerificationSent,
    VerificationSkipped,
)
from events.sms import SmsReceived
from events.topics import SMS_INBOUND
from infra.settings import Settings, VerificationSettings
from sandbox.gateways import GatewayFaults, SentSms
from tests.support.eventually import eventually
from tests.support.number_world import NumberWorld, Sim, rotation_settings, running_numbers

pytestmark = pytest.mark.integration

Numbers = Callable[..., contextlib.AbstractAsyncContextManager[NumberWorld]]


@pytest.fixture
def numbers(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> Numbers:
    def start(**options: Any) -> contextlib.AbstractAsyncContextManager[NumberWorld]:
        return running_numbers(
            settings, kafka_bootstrap, database_url, flows=(verification,), **options
        )

    return start


async def number_status(w: NumberWorld, sim: Sim) -> str | None:
    status: str | None = await w.pool.fetchval(
        "SELECT number_status FROM sims WHERE iccid = $1", sim.iccid
    )
    return status


def sent_to(w: NumberWorld, sim: Sim, sender: Sim, code: str, **times: Any) -> VerificationSent:
    now = w.clock.now()
    return VerificationSent.create(
        producer="simfleet/verification", time=now, iccid=sim.iccid,
        request_id=f"test:{sim.iccid}", number=sim.number, code=code, sender_iccid=sender.iccid,
        sender_port=sender.port, sent_at=times.get("sent_at", now),
        expires_at=times.get("expires_at", now + timedelta(seconds=30)),
    )  # fmt: skip


async def test_a_new_number_is_proven_by_an_sms_from_another_sim_through_the_bridge(
    numbers: Numbers,
) -> None:
    async with numbers() as w:
        sender = await w.add_sim(7001)
        target = await w.add_sim(7002, verified=False)
        await w.network.push_status()  # dev-status → bridge → gateway_ports: port → ICCID
        await eventually(
            lambda: w.pool.fetchval("SELECT count(*) FROM gateway_ports WHERE status_code = 3"),
            until=lambda n: n == 2,
        )
        assigned = w.assigned(target)
        await w.emit(assigned)

        (online,) = await w.wait_for(NumberOnline)
        (sent,) = await w.events(VerificationSent)
        assert (sent.data.request_id, sent.data.number) == (assigned.id, target.number)
        assert (sent.data.sender_iccid, sent.data.sender_port) == (sender.iccid, sender.port)
        assert sent.data.expires_at - sent.data.sent_at == timedelta(seconds=30)
        assert (online.data.request_id, online.data.number) == (sent.id, target.number)
        assert online.data.online_until is not None
        assert online.data.online_until > online.time
        assert online.data.mobility_subscription_id == target.subscription_id
        assert online.correlationid == assigned.correlationid
        # the SMS went from the sender's port to the target's number, in the gateway's format
        code = sent.data.code
        assert w.network.sent == [
            SentSms(sender.gateway_id, sender.port, sender.iccid, target.number,
                    f"VERIFY {code}", w.network.sent[0].tid, "delivered")
        ]  # fmt: skip
        (task,) = w.network.tasks
        assert (task["from"], task["to"], task["chs"]) == (sender.port, target.number[1:], "utf8")
        await eventually(lambda: number_status(w, target), until=lambda s: s == "verified")

        # what arrived on the target's port is ours: the webhook flow does not forward it
        (arrived,) = await w.events(SmsReceived, SMS_INBOUND)
        assert (arrived.data.iccid, arrived.data.port) == (target.iccid, target.port)
        assert await is_verification_sms(w.pool, arrived)
        other = arrived.model_copy(update={"id": "sms.received_other"})
        others = [
            other.model_copy(update={"data": arrived.data.model_copy(update={"body": body})})
            for body in ("Your code is 123456", "VERIFY ZZZ999")
        ]
        assert await verification_sms_ids(w.pool, [arrived, *others]) == {arrived.id}

        # a redelivered number.assigned re-emits its outcome and sends nothing
        await w.emit(assigned)
        await w.wait_for(VerificationSent, until=lambda es: len(es) == 2)
        assert {e.id for e in await w.events(VerificationSent)} == {sent.id}
        assert w.network.counts["accepted"] == 1
        assert len(await w.events(NumberOnline)) == 1
        assert await w.dead_letters() == 0


async def test_the_reply_counts_whichever_is_consumed_first(numbers: Numbers) -> None:
    async with numbers() as w:
        sender = await w.add_sim(7101)
        early, late = await w.add_sim(7102, verified=False), await w.add_sim(7103, verified=False)

        # the reply is consumed before its verification.sent: it waits in verification_replies
        await w.reply(early, "verify rply01")
        await eventually(
            lambda: w.pool.fetchval(
                "SELECT count(*) FROM verification_replies WHERE code = 'RPLY01'"
            ),
            until=lambda n: n == 1,
        )
        assert await w.events(NumberOnline) == []
        first = sent_to(w, early, sender, "RPLY01")
        await w.emit(first)
        (online,) = await w.wait_for(NumberOnline)
        assert (online.data.iccid, online.data.request_id) == (early.iccid, first.id)

        # verification.sent is consumed first: the reply finds it pending
        second = sent_to(w, late, sender, "SENT02")
        await w.emit(second)
        await eventually(
            lambda: w.verification(request_id=second.data.request_id),
            until=lambda row: row is not None and row["state"] == "sent",
        )
        await w.reply(late, "  VERIFY   sent02 ")
        both = await w.wait_for(NumberOnline, until=lambda es: len(es) == 2)
        assert {(e.data.iccid, e.data.request_id) for e in both} == {
            (early.iccid, first.id),
            (late.iccid, second.id),
        }
        unmatched = await w.pool.fetchval(
            "SELECT count(*) FROM verification_replies WHERE matched_request_id IS NULL"
        )
        assert unmatched == 0


async def test_a_lost_sms_times_out_a_late_reply_changes_nothing_and_a_retry_verifies(
    numbers: Numbers,
) -> None:
    async with numbers(
        rotation_config=rotation_settings(verification_expiry_s=1.0),
        verification_config=VerificationSettings(retries=0),
    ) as w:
        await w.add_sim(7201)
        target = await w.add_sim(7202, verified=False)
        w.network.switch("lossy", GatewayFaults(numbers=frozenset({target.number})))
        await w.emit(w.assigned(target))
        (sent,) = await w.wait_for(VerificationSent)
        await eventually(lambda: _async(w.network.counts["lost"]), until=lambda n: n == 1)

        sweeper = await w.verification_sweeps()
        await eventually(sweeper.expire_verifications, until=lambda n: n == 1, within=5)
        (failed,) = await w.wait_for(NumberVerificationFailed)
        assert (failed.data.request_id, failed.data.reason) == (sent.id, "timeout")
        await eventually(lambda: number_status(w, target), until=lambda s: s == "failed")

        await w.reply(target, f"VERIFY {sent.data.code}")  # too late: kept, decides nothing
        await eventually(
            lambda: w.pool.fetchval("SELECT count(*) FROM verification_replies"),
            until=lambda n: n == 1,
        )
        row = await w.verification(request_id=sent.data.request_id)
        assert row is not None
        assert row["state"] == "failed"

        w.network.switch("happy")  # the operator asks again
        retry = VerificationRequested.create(
            producer="simfleet/commands", time=w.clock.now(), iccid=target.iccid, ref="op-1"
        )
        await w.emit(retry)
        (online,) = await w.wait_for(NumberOnline)
        assert online.data.number == target.number
        assert online.data.request_id != sent.id
        await eventually(lambda: number_status(w, target), until=lambda s: s == "verified")
        assert await sweeper.expire_verifications() == 0


async def test_the_first_sim_waits_for_a_sender_and_is_verified_once_a_second_is_online(
    numbers: Numbers,
) -> None:
    async with numbers() as w:
        first = await w.add_sim(7301, verified=False)
        await w.emit(w.assigned(first))
        (skipped,) = await w.wait_for(VerificationSkipped)
        assert "no other active SIM" in skipped.data.reason
        assert w.network.counts["accepted"] == 0
        await eventually(lambda: number_status(w, first), until=lambda s: s == "skipped")

        # a second new SIM: the first one, unproven itself, can send its code (sending does not
        # depend on the sender's own number); once the second is online, the first is asked
        # again by itself and verified through the second
        second = await w.add_sim(7302, verified=False)
        await w.emit(w.assigned(second))
        online = await w.wait_for(NumberOnline, until=lambda es: len(es) == 2)
        assert {e.data.iccid for e in online} == {first.iccid, second.iccid}
        sent = {e.data.iccid: e.data.sender_iccid for e in await w.events(VerificationSent)}
        assert sent == {second.iccid: first.iccid, first.iccid: second.iccid}
        (again,) = await w.events(VerificationRequested)
        assert again.data.iccid == first.iccid
        assert again.data.ref == f"sender-available:{skipped.data.request_id}"
        statuses = "SELECT array_agg(DISTINCT number_status) FROM sims WHERE iccid = ANY($1)"
        await eventually(
            lambda: w.pool.fetchval(statuses, [first.iccid, second.iccid]),
            until=lambda found: found == ["verified"],
        )
        # asked once: a redelivered number.online, or the sweep, finds nobody waiting any more
        await w.emit(*online)
        assert await (await w.verification_sweeps()).resume_awaiting_sender() == 0
        assert len(await w.events(VerificationRequested)) == 1


async def test_a_refusing_sender_makes_way_for_the_next(numbers: Numbers) -> None:
    async with numbers() as w:
        broken = await w.add_sim(7401)
        working = await w.add_sim(7402)
        target = await w.add_sim(7403, verified=False)
        line = w.carrier.subscriber_by_iccid(broken.iccid)
        assert line is not None
        line.status = "SUSPENDED"  # its port no longer registers
        await w.pool.execute(  # make the broken one the first choice
            "UPDATE sims SET number_status = 'pending' WHERE iccid = $1", working.iccid
        )
        await w.emit(w.assigned(target))
        (sent,) = await w.wait_for(VerificationSent)
        assert sent.data.sender_iccid == working.iccid
        assert w.network.counts["refused:5"] == 1
        await w.wait_for(NumberOnline)


async def _async(value: int) -> int:
    return value
