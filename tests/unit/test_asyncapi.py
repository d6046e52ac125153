import yaml

from events.envelope import EVENT_TYPES
from events.topics import ALL_TOPICS
from infra.asyncapi import DOC_PATH
from simfleet.components import asyncapi_document


def test_checked_in_asyncapi_document_is_current() -> None:
    assert DOC_PATH.read_text() == asyncapi_document(), "run `make asyncapi` and commit docs/"


def test_document_names_every_topic_and_event_schema() -> None:
    document = yaml.safe_load(DOC_PATH.read_text())
    channels = {c["address"] for c in document["channels"].values()}
    assert {t.name for t in ALL_TOPICS} <= channels
    schemas = document["components"]["schemas"]
    assert {cls.__name__ for cls in EVENT_TYPES.values()} <= set(schemas)
