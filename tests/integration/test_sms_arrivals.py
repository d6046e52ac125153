"""Pushes without a time or a receiving number, through the bridge over real HTTP, a real broker
and Postgres: a gateway's retry of a timeless push is one SMS, and every SMS is keyed by the
receiving SIM's number whatever format pushed it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from events.topics import SMS_INBOUND
from infra.bus import Bus
from infra.http import serve_http
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import SecretsSettings, Settings
from producers.skyline.arrivals import SmsArrivals
from producers.skyline.bridge import create_bridge_app
from sandbox.helix_world import make_iccid
from tests.integration.test_gateway_bridge import read_records, sms_of
from tests.support.clock import ControlledClock

pytestmark = pytest.mark.integration

SECRET = "gw-secret-arrivals-5k2"
ICCID, NUMBER = make_iccid(4242), "+15559874242"
PORTED_ICCID, PORTED_NUMBER = make_iccid(4343), "+15559874343"
GW = "00-30-f1-0a-0b-0c"
WINDOW_S = 600.0


@dataclass
class Bridge:
    url: str
    clock: ControlledClock
    pool: asyncpg.Pool
    settings: Settings

    async def push_text(self, http: httpx.AsyncClient, **query: str) -> list[str]:
        """An "SMS to HTTP" push without SCTS, mac or gateway id: no time of its own."""
        body = b'Sender: +15551230000\r\nReceiver: "61.01"\r\n\r\nyour code is 4242'
        params = {"port": "61A", "sender": "+15551230000", "iccid": ICCID, **query}
        answer = await http.post(
            f"{self.url}/s/{SECRET}/sms", params=params, content=body,
            headers={"content-type": "application/octet-stream"},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        ids: list[str] = answer.json()["ids"]
        return ids

    async def push_rows(self, http: httpx.AsyncClient, *rows: list[Any]) -> list[str]:
        push = {"type": "recv-sms", "sms_num": len(rows), "sms": list(rows)}
        answer = await http.post(f"{self.url}/s/{SECRET}/sms", params={"gateway_id": GW}, json=push)
        assert answer.status_code == 200, answer.text
        ids: list[str] = answer.json()["ids"]
        return ids

    async def records(self, bootstrap: str, count: int) -> list[Any]:
        name = f"{self.settings.kafka.topic_prefix}{SMS_INBOUND.name}"
        return await read_records(bootstrap, name, count=count)


@pytest.fixture
async def bridge(
    settings: Settings, database_url: str, kafka_bootstrap: str, topics: list[str]
) -> AsyncIterator[Bridge]:
    settings = settings.model_copy(
        update={
            "secrets": SecretsSettings(gateway_secret=SecretStr(SECRET)),
            "bridge_retry_window_s": WINDOW_S,
        }
    )
    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        await pool.execute(
            "INSERT INTO sims (iccid, status, current_number) VALUES ($1, 'active', $2)",
            ICCID, NUMBER,
        )  # fmt: skip
        # a SIM the bridge knows only by its port: the gateway reported it, no sims row names it
        await pool.execute("INSERT INTO gateways (gateway_id) VALUES ($1)", GW)
        await pool.execute(
            "INSERT INTO gateway_ports (gateway_id, port, status_code, iccid, number, updated_at)"
            " VALUES ($1, '3.01', 3, $2, $3, now())",
            GW, PORTED_ICCID, PORTED_NUMBER,
        )  # fmt: skip
        clock = ControlledClock()
        broker = build_broker(settings.kafka, kafka_bootstrap)
        async with broker:
            app = create_bridge_app(
                settings, Bus(broker, settings.kafka.topic_prefix), clock,
                SmsArrivals(pool, settings.bridge_retry_window_s),
            )  # fmt: skip
            async with serve_http(app) as url:
                yield Bridge(url, clock, pool, settings)
    finally:
        await pool.close()


async def test_a_timeless_text_push_retried_by_the_gateway_is_one_sms_keyed_by_number(
    bridge: Bridge, kafka_bootstrap: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        first = await bridge.push_text(http)
        bridge.clock.ahead = timedelta(seconds=7)  # the gateway saw no 200 and pushes again
        again = await bridge.push_text(http)
        bridge.clock.ahead = timedelta(seconds=95)
        third = await bridge.push_text(http)

    assert first == again == third, "a retry of the push became another SMS"
    records = await bridge.records(kafka_bootstrap, count=3)
    assert len(records) == 3  # at least once in: the duplicates carry one id
    assert {r.key for r in records} == {NUMBER.encode()}
    sms = [sms_of(r) for r in records]
    assert {s.id for s in sms} == set(first)
    assert {(s.subject, s.data.to, s.data.iccid) for s in sms} == {(NUMBER, NUMBER, ICCID)}
    assert await bridge.pool.fetchval("SELECT count(*) FROM sms_arrivals") == 1


async def test_the_same_text_after_the_retry_window_is_a_new_sms(
    bridge: Bridge, kafka_bootstrap: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        first = await bridge.push_text(http)
        bridge.clock.ahead = timedelta(seconds=WINDOW_S + 60)
        later = await bridge.push_text(http)
        other_port = await bridge.push_text(http, port="62A")

    assert len({*first, *later, *other_port}) == 3
    sms = [sms_of(r) for r in await bridge.records(kafka_bootstrap, count=3)]
    assert {s.id for s in sms} == {*first, *later, *other_port}


async def test_recv_sms_rows_without_time_or_receiver_are_keyed_by_their_sims_number(
    bridge: Bridge, kafka_bootstrap: str
) -> None:
    text = base64.b64encode(b"hello").decode()
    by_iccid = [0, "1.01", 0, "+15551230000", "", text, ICCID, "", ""]
    by_port = [0, "3.01", 0, "+15551230001", "", text]  # older firmware: no ICCID
    timed = [0, "1.01", 1763900000, "+15551230002", "", text, ICCID, "", ""]
    async with httpx.AsyncClient(timeout=30) as http:
        ids = await bridge.push_rows(http, by_iccid, by_port, timed)
        bridge.clock.ahead = timedelta(seconds=30)
        assert await bridge.push_rows(http, by_iccid, by_port, timed) == ids

    records = await bridge.records(kafka_bootstrap, count=6)
    keys = {sms_of(r).data.sender: r.key for r in records}
    assert keys == {
        "+15551230000": NUMBER.encode(),
        "+15551230001": PORTED_NUMBER.encode(),
        "+15551230002": NUMBER.encode(),
    }
    assert {sms_of(r).id for r in records} == set(ids)
