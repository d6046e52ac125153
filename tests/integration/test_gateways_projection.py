from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from events.gateway import GatewayStatusReported
from events.sms import SmsReceived
from events.topics import GATEWAY_STATUS, SMS_INBOUND
from infra.bus import Bus
from infra.clock import SystemClock
from infra.http import serve_http
from infra.kafka import build_broker
from infra.postgres import create_pool
from infra.settings import SecretsSettings, Settings
from producers.skyline.bridge import create_bridge_app
from projections.gateways import GatewaysProjection
from projections.sms import InboundSmsProjection
from sandbox.skyline import SandboxGateway
from tests.support.eventually import eventually
from tests.support.positions import projection_caught_up
from tests.support.projecting import projecting

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 4, 12, tzinfo=UTC)
MAC = "00-30-f1-01-02-03"
ICCID = "89012608822000000011"


def report(at: datetime, iccid: str, status: int) -> GatewayStatusReported:
    return GatewayStatusReported.create(
        producer="t",
        time=at,
        gateway_id=MAC,
        seq=1,
        max_ports=32,
        reported_at=at,
        ports=[{"port": "1.01", "status_code": status, "iccid": iccid, "number": None}],
    )


async def test_ports_keep_the_newest_report_and_map_sms_without_number(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> None:
    pool = await create_pool(database_url)
    broker = build_broker(settings.kafka, kafka_bootstrap)
    await broker.start()
    bus = Bus(broker, settings.kafka.topic_prefix)
    try:
        await bus.emit(report(T0 + timedelta(minutes=5), ICCID, 3))
        await bus.emit(report(T0, "89012608822000000029", 6))  # older, arrives late
        sms = SmsReceived.create(
            producer="t",
            time=T0,
            gateway_id=MAC,
            port="1.01",
            sender="Google",
            to=None,
            body="G-123456 is your code",
            received_at=T0 + timedelta(minutes=6),
        )
        stray = SmsReceived.create(
            producer="t",
            time=T0,
            gateway_id="elsewhere",
            port="9.01",
            sender="+15551230000",
            to="+15550009999",
            body="who am I",
            received_at=T0,
        )
        await bus.emit_many([sms, stray])
        async with projecting(
            [GatewaysProjection(), InboundSmsProjection()],
            bootstrap=kafka_bootstrap,
            kafka=settings.kafka,
            pool=pool,
            bus=bus,
        ):
            await eventually(
                lambda: pool.fetchval("SELECT count(*) FROM inbound_sms"), until=lambda n: n == 2
            )
            await eventually(
                lambda: pool.fetchval("SELECT count(*) FROM gateway_ports"), until=bool
            )
            for name, topic in (
                ("gateways", GATEWAY_STATUS),
                ("gateways", SMS_INBOUND),
                ("inbound_sms", SMS_INBOUND),
            ):
                await projection_caught_up(pool, kafka_bootstrap, settings.kafka, name, topic)
        port = await pool.fetchrow("SELECT * FROM gateway_ports WHERE gateway_id = $1", MAC)
        assert (port["iccid"], port["status_code"]) == (ICCID, 3)
        gateway = await pool.fetchrow("SELECT * FROM gateways WHERE gateway_id = $1", MAC)
        assert (gateway["mac_address"], gateway["total_ports"]) == (MAC, 32)
        resolved = {
            r["message_id"]: r
            for r in await pool.fetch(
                "SELECT message_id, sim_iccid, unknown_sim FROM inbound_sms_resolved"
            )
        }
        assert resolved[sms.id]["sim_iccid"] == ICCID
        assert resolved[stray.id]["unknown_sim"] is True
    finally:
        await broker.stop()
        await pool.close()


async def test_every_push_format_says_where_a_sim_is_and_where_its_gateway_answers(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> None:
    """The "SMS to HTTP" push (port and ICCID in the query) and recv-sms rows of newer firmware
    (port and ICCID in the row) place the receiving SIM in its port, as a status push does; the
    gateway is reached at the address it pushed from."""
    secret = "gw-secret-where-9c1e"
    settings = settings.model_copy(
        update={"secrets": SecretsSettings(gateway_secret=SecretStr(secret))}
    )
    text_sim, json_sim = "89012608822000000037", "89012608822000000045"
    pool = await create_pool(database_url)
    broker = build_broker(settings.kafka, kafka_bootstrap)
    await broker.start()
    bus = Bus(broker, settings.kafka.topic_prefix)
    gateways = {"00-30-f1-0a-00-01": "127.0.0.2", "00-30-f1-0a-00-02": "127.0.0.3"}
    clients = [
        httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=host))
        for host in gateways.values()
    ]
    try:
        async with serve_http(create_bridge_app(settings, bus, SystemClock())) as bridge:
            (text_gw, json_gw) = [
                SandboxGateway(bridge, gateway_id, secret, client=client)
                for gateway_id, client in zip(gateways, clients, strict=True)
            ]
            await text_gw.push_sms("61A", "+15551230000", None, "hi", iccid=text_sim, mode="http")
            await json_gw.push_sms("7.02", "Google", None, "G-1 is your code", iccid=json_sim)
        async with projecting(
            [GatewaysProjection()],
            bootstrap=kafka_bootstrap,
            kafka=settings.kafka,
            pool=pool,
            bus=bus,
        ):
            rows = await eventually(
                lambda: pool.fetch(
                    "SELECT gateway_id, port, iccid, status_code FROM gateway_ports ORDER BY port"
                ),
                until=lambda found: len(found) == 2,
            )
            hosts = await eventually(
                lambda: pool.fetch("SELECT gateway_id, host FROM gateways"),
                until=lambda found: len(found) == 2,
            )
        assert [tuple(r) for r in rows] == [
            ("00-30-f1-0a-00-01", "61A", text_sim, 3),
            ("00-30-f1-0a-00-02", "7.02", json_sim, 3),
        ]
        assert {r["gateway_id"]: r["host"] for r in hosts} == gateways
    finally:
        for client in clients:
            await client.aclose()
        await broker.stop()
        await pool.close()
