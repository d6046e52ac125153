"""Malformed records on every topic, consumed by the runtime's real consumers and projections.

On each topic of ``ALL_TOPICS``, into one partition: garbage bytes, a valid CloudEvent of a
type nobody knows, an event of the topic's own type whose data does not validate (with the
headers a real producer sets, so the consumers filtering on that type decode it too), then
one valid event. Every projection reading the topic (the archive reads them all), and every
consumer that wants the broken event's type, must park each bad record on ``<topic>.dlq``
verbatim with its reason and position — and the valid event after them must still be
processed: the partition keeps moving.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

from events import codec
from events.envelope import Event
from events.gateway import GatewayPayloadRejected, GatewayStatusReported
from events.helix import HelixApiCalled
from events.reseller import ResellerCreated, ResellerTokenUsed
from events.sim import SimActivationRequested
from events.sms import SmsReceived
from events.topics import (
    ALL_TOPICS,
    GATEWAY_REJECTED,
    GATEWAY_STATUS,
    HELIX_CALLS,
    RESELLER_REGISTRY,
    RESELLER_USAGE,
    SIM_LIFECYCLE,
    SMS_INBOUND,
    WEBHOOK_DELIVERIES,
    WEBHOOK_RETRY,
    Topic,
)
from events.webhook import WebhookDeliverySucceeded, WebhookRetryScheduled
from infra.http import free_port
from infra.settings import SecretsSettings, Settings
from projections.registry import all_projections
from sandbox.helix_world import make_iccid, make_imei
from tests.support.eventually import eventually
from tests.support.stack import components, running

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
ICCID = make_iccid(4242)


def valid_events() -> dict[Topic, Event]:
    """One valid event per topic; the test fails if a topic is added without one."""
    at: dict[str, Any] = {"producer": "test/malformed", "time": NOW}
    attempt: dict[str, Any] = {"message_id": "msg-1", "endpoint_id": "ep-1", "reseller_id": "acme"}
    attempt |= {"event_type": "sms.received", "attempt": 1}
    return {
        SMS_INBOUND: SmsReceived.create(
            **at, gateway_id="gw-1", sender="+15551230000", to="+15559870000", body="hello",
            received_at=NOW,
        ),
        GATEWAY_STATUS: GatewayStatusReported.create(
            **at, gateway_id="gw-valid", ports=[{"port": "1.01", "status_code": 3}],
            reported_at=NOW,
        ),
        SIM_LIFECYCLE: SimActivationRequested.create(
            **at, iccid=ICCID, imei=make_imei(4242), ref="malformed-test"
        ),
        RESELLER_REGISTRY: ResellerCreated.create(**at, reseller_id="acme", name="Acme"),
        RESELLER_USAGE: ResellerTokenUsed.create(
            **at, reseller_id="acme", token_id="tok-1", token_name="ops",
            requested_by="reseller:acme/ops", ref="use-1", requests=1,
            uses=[{"method": "GET", "path": "/reseller/v1/sims", "requests": 1, "first_at": NOW,
                   "last_at": NOW}],
        ),
        WEBHOOK_DELIVERIES: WebhookDeliverySucceeded.create(
            **at, **attempt, status_code=200, attempted_at=NOW
        ),
        WEBHOOK_RETRY: WebhookRetryScheduled.create(
            **at, **(attempt | {"attempt": 5}), due_at=NOW, body="{}"
        ),
        HELIX_CALLS: HelixApiCalled.create(
            **at, call_id="call-1", operation="activate", method="POST", url="https://hx/a",
            ok=True, duration_ms=1.0, called_at=NOW,
        ),
        GATEWAY_REJECTED: GatewayPayloadRejected.create(
            **at, ref="rej-1", gateway_id="gw-1", reason="garbage", status_code=400,
            method="POST", path="/sms", query="", headers={}, body_base64="", received_at=NOW,
        ),
    }  # fmt: skip


@dataclass(frozen=True)
class Bad:
    kind: str
    value: bytes
    headers: dict[str, str]
    reason: str  # what the dead letter's error must say


def bad_records(valid: Event, foreign: Event) -> list[Bad]:
    """``foreign``: a valid event of another topic, which a projection must not take for one of
    its own topic's (each topic is read by its own decoder)."""
    unknown = valid.model_dump(mode="json") | {"type": "sim.exploded", "id": "sim.exploded_1"}
    broken = valid.model_dump(mode="json") | {"data": {"unexpected": True}}
    real_headers = codec.headers_for(valid)
    return [
        Bad("garbage", b"\x00\xff{not json", {}, "not JSON"),
        Bad(
            "unknown type",
            json.dumps(unknown).encode(),
            real_headers | {"ce_type": "sim.exploded", "ce_id": "sim.exploded_1"},
            "unknown event type 'sim.exploded'",
        ),
        Bad("invalid data", json.dumps(broken).encode(), real_headers, f"invalid {valid.type}"),
        Bad(
            "another topic's type",
            codec.encode(foreign),
            codec.headers_for(foreign),
            f"unknown event type {foreign.type!r}",
        ),
    ]


# consumers besides the projections that decode the broken event's type and must park it, as
# their dead letters name them: FastStream subscribers by their (prefixed) Kafka group
def type_consumers(topic: Topic, prefix: str) -> set[str]:
    wanting = {
        SIM_LIFECYCLE: {"provisioning"},
        SMS_INBOUND: {"webhooks"},
        WEBHOOK_RETRY: {"webhooks"},
    }
    return wanting.get(topic, set())


def processed_checks(valid: dict[Topic, Event]) -> dict[Topic, tuple[str, tuple[Any, ...]]]:
    """Per topic, a query that finds the valid event's effect beyond the archive."""
    return {
        SMS_INBOUND: ("SELECT 1 FROM inbound_sms WHERE message_id = $1", (valid[SMS_INBOUND].id,)),
        GATEWAY_STATUS: ("SELECT 1 FROM gateway_ports WHERE gateway_id = $1", ("gw-valid",)),
        # the activation consumer acted on it: the carrier activated the SIM
        SIM_LIFECYCLE: ("SELECT 1 FROM sims WHERE iccid = $1 AND status <> 'pending'", (ICCID,)),
        RESELLER_REGISTRY: ("SELECT 1 FROM resellers WHERE id = $1", ("acme",)),
        RESELLER_USAGE: ("SELECT 1 FROM operator_audit WHERE actor = $1", ("reseller:acme/ops",)),
        WEBHOOK_DELIVERIES: ("SELECT 1 FROM webhook_deliveries WHERE message_id = $1", ("msg-1",)),
        HELIX_CALLS: ("SELECT 1 FROM helix_api_logs WHERE call_id = $1", ("call-1",)),
    }


async def read_dead_letters(
    bootstrap: str, prefix: str, until: Callable[[dict[tuple[str, int], list[Any]]], bool]
) -> dict[tuple[str, int], list[Any]]:
    """Dead letters by (source topic, source offset), read until ``until`` holds (or 60 s)."""
    consumer = AIOKafkaConsumer(
        *(t.dlq.full_name(prefix) for t in ALL_TOPICS),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    letters: dict[tuple[str, int], list[Any]] = defaultdict(list)
    try:
        deadline = time.monotonic() + 60
        while not until(letters) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    letters[headers["dlq_topic"], int(headers["dlq_offset"])].append((r, headers))
    finally:
        await consumer.stop()
    return letters


@pytest.mark.timeout(240)
async def test_bad_records_on_every_topic_are_dead_lettered_and_the_partitions_move_on(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> None:
    valid = valid_events()
    assert set(valid) == set(ALL_TOPICS)
    prefix = settings.kafka.topic_prefix
    readers = {
        t: {f"projection.{p.name}" for p in all_projections().values() if t in p.topics}
        for t in ALL_TOPICS
    }
    assert all(readers.values())  # the archive reads every topic
    expected: dict[tuple[str, int], tuple[Bad, set[str]]] = {}
    valid_offsets: set[tuple[str, int]] = set()

    async with running(
        settings, kafka_bootstrap, database_url, components("projector", "workers")
    ) as rt:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for topic, event in valid.items():
                name = topic.full_name(prefix)
                foreign = next(e for t, e in valid.items() if t != topic)
                for bad in bad_records(event, foreign):
                    sent = await producer.send_and_wait(
                        name,
                        bad.value,
                        key=event.subject.encode(),
                        partition=0,
                        headers=[(k, v.encode()) for k, v in bad.headers.items()],
                    )
                    wanted = set(readers[topic])
                    if bad.kind == "invalid data":
                        wanted |= type_consumers(topic, prefix)
                    expected[name, sent.offset] = (bad, wanted)
                sent = await producer.send_and_wait(
                    name,
                    codec.encode(event),
                    key=event.subject.encode(),
                    partition=0,
                    headers=[(k, v.encode()) for k, v in codec.headers_for(event).items()],
                )
                valid_offsets.add((name, sent.offset))
        finally:
            await producer.stop()

        async def archived() -> int:
            found = await rt.pool.fetchval(
                "SELECT count(*) FROM event_log WHERE id = ANY($1::text[])",
                [e.id for e in valid.values()],
            )
            return int(found)

        await eventually(archived, until=lambda n: n == len(valid), within=60, interval=0.2)
        for query, args in processed_checks(valid).values():

            async def effect(query: str = query, args: tuple[Any, ...] = args) -> object:
                return await rt.pool.fetchval(query, *args)

            await eventually(effect, within=60, interval=0.2)

        def complete(letters: dict[tuple[str, int], list[Any]]) -> bool:
            return all(
                wanted <= {h["dlq_consumer"] for _, h in letters.get(where, [])}
                for where, (_, wanted) in expected.items()
            )

        letters = await read_dead_letters(kafka_bootstrap, prefix, complete)

    for (name, offset), (bad, wanted) in expected.items():
        parked = letters.get((name, offset), [])
        by = {h["dlq_consumer"] for _, h in parked}
        assert wanted <= by, f"{bad.kind} on {name}@{offset}: parked by {by}, wanted {wanted}"
        for record, headers in parked:
            assert record.value == bad.value
            assert record.topic == f"{name}.dlq"
            assert headers["dlq_partition"] == "0"
            assert bad.reason in headers["dlq_error"], (bad.kind, name, headers["dlq_error"])
    assert not valid_offsets & set(letters), "a valid event was dead-lettered"


async def test_an_sms_with_a_nul_character_is_stored_and_archived_like_any_other(
    settings: Settings, kafka_bootstrap: str, database_url: str, topics: list[str]
) -> None:
    """Postgres refuses U+0000 in text and jsonb: before events replaced it, such an SMS was
    acknowledged by the bridge and then dead-lettered by inbound_sms and the archive."""
    secret = "nul-test-gateway-secret"
    settings = settings.model_copy(
        update={
            "bridge_port": free_port(),
            "secrets": SecretsSettings(gateway_secret=SecretStr(secret)),
        }
    )
    push = {"to": "+16465550001", "from": "+15551230000", "body": "code\u00001234"}
    async with (
        running(settings, kafka_bootstrap, database_url, components("projector", "bridge")) as rt,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.bridge_port}") as bridge,
    ):
        answer = await bridge.post(
            "/sms/simple", json=push | {"gateway_id": "gw-1"}, headers={"x-gateway-secret": secret}
        )
        assert answer.status_code == 200, answer.text
        [message_id] = answer.json()["ids"]

        async def stored() -> tuple[object, object]:
            body = await rt.pool.fetchval(
                "SELECT body FROM inbound_sms WHERE message_id = $1", message_id
            )
            archived = await rt.pool.fetchval("SELECT 1 FROM event_log WHERE id = $1", message_id)
            return body, archived

        body, _ = await eventually(stored, until=all, within=30, interval=0.2)
    assert body == "code\ufffd1234"
