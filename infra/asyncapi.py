"""The AsyncAPI 3.0 document of every topic simfleet publishes, for teams that subscribe to them.

Built from the topic map and the event models themselves (not from the consumer framework), so
that what it says is what a record carries: one channel per topic named as the topic, one
message per event type with its Kafka headers as a schema, its key, and its value's schema (the
same serialization-mode schema as ``events/schemas``). The YAML is key-sorted so the checked-in
``docs/asyncapi.yaml`` only changes when the contract changes.
"""

from __future__ import annotations

import builtins
import html
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse

from events.envelope import EVENT_TYPES, Event
from events.schema_export import event_schema
from events.topics import (
    ALL_TOPICS,
    CLOUDEVENTS_JSON,
    HEADER_CORRELATION,
    HEADER_ID,
    HEADER_SOURCE,
    HEADER_SPECVERSION,
    HEADER_SUBJECT,
    HEADER_TIME,
    HEADER_TYPE,
    Topic,
)

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"
# the address infra/compose.yaml's Kafka listens on; a deployment's own is KAFKA_BOOTSTRAP_SERVERS
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
KAFKA_BINDING = "0.5.0"
SCHEMAS_REF = "#/components/schemas/{model}"

# What the record key is, where it is not simply one field of ``data``: the key is always the
# event's ``subject`` (also in the value and in the ``ce_subject`` header), UTF-8 encoded.
KEY_EXCEPTIONS = {
    "sms.received": "data.to (the receiving number, E.164); when the gateway did not say, "
    "data.iccid; when it said neither, '<data.gateway_id>:<data.port>'",
    "sms.delivery_reported": "data.recipient (the number the reported SMS was sent to)",
    "helix.api_called": "data.iccid; for a call without one, data.mobility_subscription_id; "
    "without either, data.operation",
}


def key_of(cls: builtins.type[Event]) -> str:
    return KEY_EXCEPTIONS.get(cls.event_type(), f"data.{cls.subject_field}")


def _headers_schema(event_type: str) -> dict[str, Any]:
    text = {"type": "string"}
    properties = {
        "content-type": {"const": CLOUDEVENTS_JSON, "description": "structured-mode CloudEvent"},
        HEADER_ID: text | {"description": "the event's id: de-duplicate on it"},
        HEADER_TYPE: {"const": event_type},
        HEADER_TIME: text
        | {"format": "date-time", "description": "the value's time, the same string"},
        HEADER_SOURCE: text | {"description": "the value's source"},
        HEADER_SUBJECT: text | {"description": "the value's subject, also the record key"},
        HEADER_SPECVERSION: {"const": "1.0"},
        HEADER_CORRELATION: text | {"description": "the value's correlationid"},
    }
    return {
        "type": "object",
        "description": "Kafka record headers (UTF-8 values), copies of the value's attributes "
        "so a consumer can route without parsing the value.",
        "properties": properties,
        "required": sorted(properties),
    }


def _message(cls: builtins.type[Event], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = event_schema(cls, ref_template=SCHEMAS_REF)
    for name, sub in schema.pop("$defs", {}).items():
        if schemas.setdefault(name, sub) != sub:
            raise ValueError(f"two different schemas are named {name}")
    # $id would re-base the #/components refs inside; the standalone file keeps it
    for keyword in ("$schema", "$id"):
        schema.pop(keyword)
    schemas[cls.__name__] = schema
    doc = (cls.__doc__ or "").strip()
    return {
        "name": cls.event_type(),
        "title": cls.__name__,
        "summary": f"{cls.event_type()} (value schema: events/schemas/{cls.event_type()}.json)",
        **({"description": doc} if doc else {}),
        "contentType": CLOUDEVENTS_JSON,
        "correlationId": {
            "description": "the id of the event that started the chain this event belongs to",
            "location": f"$message.header#/{HEADER_CORRELATION}",
        },
        "headers": _headers_schema(cls.event_type()),
        "payload": {"$ref": SCHEMAS_REF.format(model=cls.__name__)},
        "bindings": {
            "kafka": {
                "bindingVersion": KAFKA_BINDING,
                "key": {"type": "string", "description": f"the event's subject: {key_of(cls)}"},
            }
        },
    }


def _channel(topic: Topic) -> dict[str, Any]:
    types = sorted(topic.types)
    return {
        "address": topic.name,
        "title": topic.name,
        "description": (
            f"Key: {topic.key} (the event's subject; per message below). Records of one key "
            f"are in order; {topic.partitions} partitions unless KAFKA_PARTITIONS says "
            "otherwise. The topic name takes the deployment's TOPIC_PREFIX. "
            f"Value: a CloudEvents 1.0 structured JSON event ({CLOUDEVENTS_JSON}); "
            f"event types: {', '.join(types)}."
        ),
        "servers": [{"$ref": "#/servers/kafka"}],
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in types},
        "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING, "topic": topic.name}},
    }


def _operation(topic: Topic) -> dict[str, Any]:
    return {
        "action": "send",
        "title": f"simfleet publishes to {topic.name}",
        "channel": {"$ref": f"#/channels/{topic.name}"},
        "messages": [
            {"$ref": f"#/channels/{topic.name}/messages/{name}"} for name in sorted(topic.types)
        ],
    }


def specification(bootstrap: str = DEFAULT_BOOTSTRAP) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    messages = {
        name: _message(EVENT_TYPES[name], schemas)
        for topic in ALL_TOPICS
        for name in sorted(topic.types)
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "simfleet",
            "version": "1",
            "description": "Events of the simfleet SIM fleet pipeline. Every record is one "
            "CloudEvent in structured mode, keyed by its subject, with its attributes copied "
            "into ce_* headers. docs/subscribers.md tells how to consume them.",
        },
        "defaultContentType": CLOUDEVENTS_JSON,
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The deployment's Kafka cluster.",
                "variables": {
                    "bootstrap": {
                        "default": bootstrap,
                        "description": "host:port of a bootstrap broker: the deployment's "
                        "KAFKA_BOOTSTRAP_SERVERS",
                    }
                },
            }
        },
        "channels": {topic.name: _channel(topic) for topic in ALL_TOPICS},
        "operations": {f"publish.{topic.name}": _operation(topic) for topic in ALL_TOPICS},
        "components": {"messages": messages, "schemas": schemas},
    }


def render(bootstrap: str = DEFAULT_BOOTSTRAP) -> str:
    return yaml.safe_dump(specification(bootstrap), sort_keys=True, allow_unicode=True)


def docs_app(document: str) -> FastAPI:
    app = FastAPI(title="simfleet event documentation", docs_url=None, redoc_url=None)
    parsed = yaml.safe_load(document)

    @app.get("/asyncapi.yaml", response_class=PlainTextResponse)
    async def asyncapi_yaml() -> str:
        return document

    @app.get("/asyncapi.json")
    async def asyncapi_json() -> Any:
        return parsed

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        rows = "".join(
            f"<h2>{html.escape(name)}</h2><p>{html.escape(str(channel.get('description', '')))}</p>"
            for name, channel in sorted(parsed.get("channels", {}).items())
        )
        return (
            "<!doctype html><title>simfleet events</title><h1>simfleet events</h1>"
            '<p><a href="/asyncapi.yaml">asyncapi.yaml</a> · '
            f'<a href="/asyncapi.json">asyncapi.json</a></p>{rows}'
        )

    return app
