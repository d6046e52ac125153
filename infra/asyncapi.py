"""The AsyncAPI document of every topic and message schema, for teams that subscribe to simfleet.

Each topic is documented as a publisher carrying the discriminated union of its event types
(what a subscriber will read), plus the subscribers of simfleet's own consumers. The YAML is
key-sorted so the checked-in ``docs/asyncapi.yaml`` only changes when the contract changes.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.specification import AsyncAPI
from pydantic import Field

from events.envelope import EVENT_TYPES
from events.topics import ALL_TOPICS, CLOUDEVENTS_JSON, Topic

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"
WIRE = (
    f"Value: a CloudEvents 1.0 structured JSON event (content-type {CLOUDEVENTS_JSON}). "
    "Headers: ce_id (deterministic event id: de-duplicate on it), ce_type, ce_time, ce_source, "
    "ce_subject, ce_specversion, ce_correlationid. "
)


def _message_schema(topic: Topic) -> Any:
    classes = tuple(EVENT_TYPES[name] for name in sorted(topic.types))
    if len(classes) == 1:
        return classes[0]
    return Annotated[Union[classes], Field(discriminator="type")]  # noqa: UP007


def specification_broker(bootstrap: str, routers: Sequence[KafkaRouter] = ()) -> KafkaBroker:
    broker = KafkaBroker(bootstrap)
    for topic in ALL_TOPICS:
        broker.publisher(
            topic.name,
            title=topic.name,
            description=f"{WIRE}Key: {topic.key}. Event types: {', '.join(sorted(topic.types))}.",
            schema=_message_schema(topic),
        )
    for router in routers:
        broker.include_router(router)
    return broker


def render(routers: Sequence[KafkaRouter] = (), bootstrap: str = "kafka:9092") -> str:
    spec = AsyncAPI(
        specification_broker(bootstrap, routers),
        title="simfleet",
        version="1",
        description="Events of the simfleet SIM fleet pipeline. Topic names take the "
        "deployment's TOPIC_PREFIX (empty by default).",
    ).to_specification()
    return yaml.safe_dump(spec.to_jsonable(), sort_keys=True, allow_unicode=True)


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
