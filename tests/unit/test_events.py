import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from events import EVENT_TYPES, MalformedEvent, UnknownEventType, decode, encode
from events.codec import decoder_for, headers_for
from events.gateway import GatewayStatusReported, PortStatus
from events.sim import NumberAssigned, SimActivated, SimActivationRequested
from events.sms import SmsReceived
from events.topics import ALL_TOPICS, SIM_LIFECYCLE, SMS_INBOUND, topic_for_type

T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)
ICCID = "89012608822000000011"


def sms(**overrides: object) -> SmsReceived:
    fields: dict[str, Any] = {
        "gateway_id": "00-30-f1-01-02-03",
        "port": "1.01",
        "sender": "+15551230000",
        "to": "5559870000",
        "body": "VERIFY ABC123",
        "received_at": T0,
    }
    fields.update(overrides)
    return SmsReceived.create(producer="test", time=datetime.now(UTC), **fields)


def test_same_fact_gives_same_id_whenever_it_is_seen() -> None:
    first = sms()
    later = SmsReceived.create(
        producer="elsewhere",
        time=datetime.now(UTC) + timedelta(hours=1),
        gateway_id="00-30-f1-01-02-03",
        port="1.01",
        sender="+15551230000",
        to="+15559870000",
        body="VERIFY ABC123",
        received_at=T0,
    )
    assert first.id == later.id
    assert first.id.startswith("sms.received_")
    assert len(first.id.removeprefix("sms.received_")) == 64


@pytest.mark.parametrize(
    "change",
    [{"body": "other"}, {"port": "2.01"}, {"received_at": T0 + timedelta(seconds=1)}, {"to": None}],
)
def test_a_different_fact_gets_a_different_id(change: dict[str, object]) -> None:
    assert sms(**change).id != sms().id


def test_a_nul_character_in_any_field_becomes_a_replacement_character() -> None:
    """Postgres text and jsonb cannot hold U+0000: such an event would reach no table."""
    event = sms(body="code\x001234", port="1.\x0001")
    assert (event.data.body, event.data.port) == ("code\ufffd1234", "1.\ufffd01")
    assert event.id == sms(body="code\ufffd1234", port="1.\ufffd01").id
    assert "\\u0000" not in encode(event).decode()
    ports = [PortStatus(port="2.\x0001", status_code=3, iccid=None)]
    status = GatewayStatusReported.create(
        producer="test", time=T0, gateway_id="gw\x00", ports=ports, reported_at=T0
    )
    assert (status.subject, status.data.ports[0].port) == ("gw\ufffd", "2.\ufffd01")
    assert sms().data.body == "VERIFY ABC123"  # nothing else changes


def test_subject_is_the_partition_key_of_the_topic() -> None:
    assert sms().subject == "+15559870000"
    assert sms(to=None, iccid=ICCID).subject == ICCID
    assert sms(to=None).subject == "00-30-f1-01-02-03:1.01"


def test_caused_events_carry_the_correlation_id_forward() -> None:
    request = SimActivationRequested.create(
        producer="test", time=T0, iccid=ICCID, imei="356938035643809", ref="sheet:2"
    )
    activated = SimActivated.of(
        request,
        producer="activation",
        time=T0,
        iccid=ICCID,
        request_id=request.id,
        mobility_subscription_id="38106",
    )
    assert activated.correlationid == request.correlationid == request.id
    assert activated.subject == ICCID


def test_wire_round_trip_and_headers() -> None:
    event = sms()
    assert decode(encode(event)) == event
    headers = headers_for(event)
    assert headers["ce_id"] == event.id
    assert headers["ce_type"] == "sms.received"
    assert headers["content-type"] == "application/cloudevents+json"
    assert datetime.fromisoformat(headers["ce_time"]) == event.time


@pytest.mark.parametrize("offset_h", [0, 2, -5])
def test_ce_time_header_is_the_bodys_time_string(offset_h: int) -> None:
    moment = T0.astimezone(timezone(timedelta(hours=offset_h)))
    event = sms().model_copy(update={"time": moment})
    body_time = json.loads(encode(event))["time"]
    assert headers_for(event)["ce_time"] == body_time


def test_unknown_type_raises_a_specific_error_naming_the_event() -> None:
    raw = encode(sms()).replace(b'"type":"sms.received"', b'"type":"sms.teleported"')
    with pytest.raises(UnknownEventType) as err:
        decode(raw)
    assert err.value.event_id is not None


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1,2]", b'{"type": "sms.received", "id": "x"}', b"\xff\xfe"],
)
def test_malformed_values_raise_malformed_event(raw: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode(raw)


def test_wrong_field_type_is_malformed() -> None:
    raw = encode(sms()).replace(b'"port":"1.01"', b'"port":{"x":1}')
    with pytest.raises(MalformedEvent):
        decode(raw)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError):
        sms(received_at=datetime(2026, 1, 1))  # noqa: DTZ001


def test_invalid_numbers_are_refused() -> None:
    with pytest.raises(ValidationError):
        NumberAssigned.create(
            producer="t", time=T0, iccid=ICCID, number="12", source="rotation", request_id="r"
        )
    assigned = NumberAssigned.create(
        producer="t", time=T0, iccid=ICCID, number="5559870000", source="rotation", request_id="r"
    )
    assert assigned.data.number == "+15559870000"
    assert assigned.source == "t"


def test_every_declared_type_has_a_model_and_every_model_a_topic() -> None:
    declared = {t for topic in ALL_TOPICS for t in topic.types}
    assert declared == set(EVENT_TYPES)
    assert topic_for_type("sms.received") is SMS_INBOUND


def test_each_event_class_belongs_to_exactly_one_topic() -> None:
    homes = [cls for topic in ALL_TOPICS for cls in topic.members]
    assert len(homes) == len(set(homes)) == len(EVENT_TYPES)


def test_a_topics_decoder_refuses_a_type_that_belongs_elsewhere() -> None:
    received = sms()
    assert decoder_for(SMS_INBOUND).decode(encode(received)) == received
    with pytest.raises(UnknownEventType) as err:
        decoder_for(SIM_LIFECYCLE).decode(encode(received))
    assert err.value.event_id == received.id


def test_a_dict_read_back_from_postgres_decodes_like_its_json() -> None:
    received = sms()
    assert decode(json.loads(encode(received))) == received
    with pytest.raises(MalformedEvent):
        decode({"type": "sms.received", "id": "x"})


def test_events_are_frozen() -> None:
    event = sms()
    with pytest.raises(ValidationError):
        event.subject = "x"  # type: ignore[misc]


def test_two_disables_ending_on_the_same_message_have_their_own_ids() -> None:
    from events.reseller import WebhookEndpointDisabled

    def disabled(failing_since: datetime | None) -> WebhookEndpointDisabled:
        return WebhookEndpointDisabled.create(
            producer="simfleet/endpoint_health",
            time=datetime(2026, 3, 9, tzinfo=UTC),
            reseller_id="acme",
            endpoint_id="ep_1",
            reason="every delivery failed for 3 days",
            message_id="sms.received_1",
            failing_since=failing_since,
        )

    first = disabled(datetime(2026, 3, 1, tzinfo=UTC))
    again = disabled(datetime(2026, 3, 6, tzinfo=UTC))  # re-enabled, the same message failing
    assert first.id != again.id
    assert disabled(datetime(2026, 3, 1, tzinfo=UTC)).id == first.id
