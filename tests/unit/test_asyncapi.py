from datetime import UTC, datetime
from typing import Any

import yaml
from jsonschema import Draft7Validator

from events import encode
from events.codec import headers_for
from events.envelope import EVENT_TYPES
from events.sms import SmsReceived
from events.topics import ALL_TOPICS, topic_for_type
from infra.asyncapi import DOC_PATH, render
from simfleet.components import asyncapi_document

T0 = datetime(2026, 2, 4, 12, 0, tzinfo=UTC)


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text())
    return loaded


def sms() -> SmsReceived:
    return SmsReceived.create(
        producer="simfleet/gateway_bridge",
        time=T0,
        gateway_id="00-30-f1-01-02-03",
        port="1.01",
        sender="+15551230000",
        to="+15559870000",
        body="hello",
        received_at=T0,
    )


def test_checked_in_asyncapi_document_is_current() -> None:
    assert DOC_PATH.read_text() == asyncapi_document(), "run `make asyncapi` and commit docs/"


def test_channels_are_the_topics_and_carry_every_event_type_as_a_message() -> None:
    doc = document()
    assert set(doc["channels"]) == {t.name for t in ALL_TOPICS}
    for name, channel in doc["channels"].items():
        assert channel["address"] == name
        assert set(channel["messages"]) == set(next(t for t in ALL_TOPICS if t.name == name).types)
    assert set(doc["components"]["messages"]) == set(EVENT_TYPES)


def test_correlation_id_points_at_the_header_records_carry() -> None:
    carried = headers_for(sms())
    for name, message in document()["components"]["messages"].items():
        location = message["correlationId"]["location"]
        assert location == "$message.header#/ce_correlationid", name
        assert location.rsplit("/", 1)[1] in carried


def test_a_records_headers_validate_against_its_messages_header_schema() -> None:
    event = sms()
    message = document()["components"]["messages"][event.type]
    validator = Draft7Validator(message["headers"], format_checker=Draft7Validator.FORMAT_CHECKER)
    assert list(validator.iter_errors(headers_for(event))) == []
    assert set(message["headers"]["required"]) == set(headers_for(event))
    wrong_type = headers_for(event) | {"ce_type": "sms.delivery_reported"}
    assert not validator.is_valid(wrong_type)


def test_a_records_value_validates_against_its_messages_payload() -> None:
    doc = document()
    event = sms()
    payload_ref = doc["components"]["messages"][event.type]["payload"]["$ref"]
    root = {"components": doc["components"], "$ref": payload_ref}
    validator = Draft7Validator(root, format_checker=Draft7Validator.FORMAT_CHECKER)
    record = yaml.safe_load(encode(event))
    assert list(validator.iter_errors(record)) == []
    assert not validator.is_valid({k: v for k, v in record.items() if k != "specversion"})


def test_every_message_documents_its_key() -> None:
    doc = document()
    for name, message in doc["components"]["messages"].items():
        key = message["bindings"]["kafka"]["key"]
        assert key["type"] == "string"
        assert "data." in key["description"], name
    sms_key = doc["components"]["messages"]["sms.received"]["bindings"]["kafka"]["key"]
    assert "data.to" in sms_key["description"]
    topic = topic_for_type("sms.received")
    assert topic.key in doc["channels"][topic.name]["description"]


def test_the_server_is_an_address_a_deployment_configures() -> None:
    server = document()["servers"]["kafka"]
    assert server["host"] == "{bootstrap}"
    assert server["variables"]["bootstrap"]["default"] == "127.0.0.1:9092"
    assert "KAFKA_BOOTSTRAP_SERVERS" in server["variables"]["bootstrap"]["description"]
    served = yaml.safe_load(render("kafka-1.internal:9092"))
    assert (
        served["servers"]["kafka"]["variables"]["bootstrap"]["default"] == "kafka-1.internal:9092"
    )
