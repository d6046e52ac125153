"""A fleet on many gateways (real broker and Postgres, the bridge and three sandbox gateways over
real HTTP, each gateway on its own loopback address with its own credentials): a verification
SMS leaves through the sender SIM's own gateway and port, whether the gateway is listed in
SK_GATEWAYS or learnt from the address it pushes from."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

import pytest

from consumers.verification import consumer as verification
from events.sim import NumberOnline, VerificationRequested, VerificationSent, VerificationSkipped
from infra.http import free_port
from infra.settings import Settings
from tests.support.eventually import eventually
from tests.support.number_world import NumberWorld, Sim, running_numbers

pytestmark = pytest.mark.integration

GATEWAYS = ("00-30-f1-00-00-0a", "00-30-f1-00-00-0b", "00-30-f1-00-00-0c")
Numbers = Callable[..., contextlib.AbstractAsyncContextManager[NumberWorld]]


@pytest.fixture
def numbers(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> Numbers:
    def start(**options: Any) -> contextlib.AbstractAsyncContextManager[NumberWorld]:
        return running_numbers(
            settings, kafka_bootstrap, database_url, flows=(verification,), gateways=GATEWAYS,
            **options,
        )  # fmt: skip

    return start


def count_is(n: int) -> Callable[[list[NumberOnline]], bool]:
    return lambda found: len(found) == n


async def only_sender(w: NumberWorld, sender: Sim, others: list[Sim]) -> None:
    """Every other possible sender out of service, so the next verification must use this."""
    await w.pool.execute(
        "UPDATE sims SET status = CASE WHEN iccid = $1 THEN 'active' ELSE 'suspended' END "
        "WHERE iccid = ANY($2::text[])",
        sender.iccid, [s.iccid for s in others],
    )  # fmt: skip


async def test_each_verification_sms_leaves_through_its_senders_own_gateway(
    numbers: Numbers,
) -> None:
    async with numbers() as w:
        senders = [await w.add_sim(9101 + n) for n in range(3)]
        # one SIM per gateway, each in port 1.01 of its own gateway
        assert [(s.gateway_id, s.port) for s in senders] == [(g, "1.01") for g in GATEWAYS]
        assert len(set(w.network.hosts.values())) == 3
        targets = [await w.add_sim(9201 + n, verified=False) for n in range(3)]

        for n, (sender, target) in enumerate(zip(senders, targets, strict=True), start=1):
            await only_sender(w, sender, [*senders, *targets[: n - 1]])
            await w.emit(w.assigned(target))
            await w.wait_for(NumberOnline, until=count_is(n))

        sent = {e.data.iccid: e.data for e in await w.events(VerificationSent)}
        for sender, target in zip(senders, targets, strict=True):
            assert (sent[target.iccid].sender_gateway, sent[target.iccid].sender_port) == (
                sender.gateway_id, "1.01",
            )  # fmt: skip
        # what each gateway received: only its own SIM's SMS, with its own credentials
        by_gateway = {s.gateway_id: (s.sender_iccid, s.to) for s in w.network.sent}
        assert by_gateway == {
            s.gateway_id: (s.iccid, t.number) for s, t in zip(senders, targets, strict=True)
        }
        assert [w.network.counts[f"send_requests:{g}"] for g in GATEWAYS] == [1, 1, 1]
        assert not [k for k in w.network.counts if k.startswith("refused")]


def port_free_on_every_gateway(hosts: list[str]) -> int:
    for _ in range(50):
        port = free_port(hosts[0])
        with contextlib.ExitStack() as stack:
            try:
                for host in hosts:
                    sock = stack.enter_context(socket.socket())
                    sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on every sandbox gateway address")


async def test_an_unlisted_gateway_is_reached_at_the_address_it_pushed_from(
    numbers: Numbers,
) -> None:
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    async with numbers(listed=False, gateway_port=port_free_on_every_gateway(hosts)) as w:
        first, second, third = [await w.add_sim(9301 + n) for n in range(3)]
        await only_sender(w, third, [first, second, third])
        target = await w.add_sim(9401, verified=False)

        # nobody knows where the third gateway answers yet: the verification waits for a sender
        await w.emit(w.assigned(target))
        (skipped,) = await w.wait_for(VerificationSkipped)
        assert w.network.counts["send_requests"] == 0

        await w.network.push_status()  # each gateway pushes from its own address
        learnt = await eventually(
            lambda: w.pool.fetch("SELECT gateway_id, host FROM gateways ORDER BY gateway_id"),
            until=lambda rows: len(rows) == 3,
        )
        assert [tuple(r) for r in learnt] == list(zip(GATEWAYS, hosts, strict=True))
        sweeper = await w.verification_sweeps()
        assert await sweeper.resume_awaiting_sender() == 1
        (asked,) = await w.wait_for(VerificationRequested)
        assert asked.data.ref == f"sender-available:{skipped.data.request_id}"

        (online,) = await w.wait_for(NumberOnline)
        assert online.data.iccid == target.iccid
        (sms,) = w.network.sent
        assert (sms.gateway_id, sms.port, sms.sender_iccid) == (GATEWAYS[2], "1.01", third.iccid)
        assert w.network.counts[f"send_requests:{GATEWAYS[2]}"] == 1
