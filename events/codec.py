"""Events on the wire: CloudEvents structured JSON value + ``ce_*`` headers, and back.

Decoding never crashes a consumer with a bare exception: an unknown type raises
``UnknownEventType`` and a value that does not validate raises ``MalformedEvent`` (both
``EventDecodeError``), which the DLQ middleware turns into a dead letter.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Union

from pydantic import AwareDatetime, Field, TypeAdapter, ValidationError

from events.envelope import Event
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
    event_classes,
)


class EventDecodeError(ValueError):
    def __init__(self, message: str, event_id: str | None = None) -> None:
        super().__init__(message)
        self.event_id = event_id


class UnknownEventType(EventDecodeError):
    pass


class MalformedEvent(EventDecodeError):
    pass


_TIME = TypeAdapter(AwareDatetime)


def wire_time(event: Event) -> str:
    """``time`` spelled as the JSON value spells it (``…Z`` for UTC), so the ``ce_time`` header
    and the body's ``time`` are the same string and a subscriber can compare them as text."""
    return str(_TIME.dump_python(event.time, mode="json"))


def headers_for(event: Event) -> dict[str, str]:
    return {
        "content-type": CLOUDEVENTS_JSON,
        HEADER_ID: event.id,
        HEADER_TYPE: event.type,
        HEADER_TIME: wire_time(event),
        HEADER_SOURCE: event.source,
        HEADER_SUBJECT: event.subject,
        HEADER_SPECVERSION: event.specversion,
        HEADER_CORRELATION: event.correlationid,
    }


def encode(event: Event) -> bytes:
    return event.model_dump_json().encode()


class Decoder:
    """Reads an event of the types ``events`` allows (a class or an ``Annotated`` discriminated
    union, as a topic declares them) in one pass: pydantic picks the class by ``type``."""

    def __init__(self, events: Any) -> None:
        self._adapter: TypeAdapter[Event] = TypeAdapter(events)
        self.types = frozenset(cls.event_type() for cls in event_classes(events))

    def decode(self, value: bytes | str | dict[str, Any]) -> Event:
        try:
            if isinstance(value, dict):
                return self._adapter.validate_python(value)
            return self._adapter.validate_json(value)
        except ValidationError as err:
            raise self._refusal(value, err) from err

    def _refusal(
        self, value: bytes | str | dict[str, Any], err: ValidationError
    ) -> EventDecodeError:
        first = err.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            return MalformedEvent(f"not JSON: {first['msg']}")
        raw = value if isinstance(value, dict) else _json_object(value)
        if raw is None:
            return MalformedEvent("event is not a JSON object")
        event_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        event_type = raw.get("type")
        if event_type not in self.types:
            return UnknownEventType(f"unknown event type {event_type!r}", event_id)
        return MalformedEvent(f"invalid {event_type}: {err}", event_id)


def _json_object(value: bytes | str) -> dict[str, Any] | None:
    try:
        raw = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    return raw if isinstance(raw, dict) else None


def _every_event(topics: tuple[Topic, ...]) -> Any:
    classes = tuple(cls for topic in topics for cls in topic.members)
    return Annotated[Union[classes], Field(discriminator="type")]  # noqa: UP007  (built at run time)


ANY_EVENT = Decoder(_every_event(ALL_TOPICS))


def decode(value: bytes | str | dict[str, Any]) -> Event:
    """An event of any known type (the topic's own decoder, ``decoder_for``, also refuses a
    type that does not belong on it)."""
    return ANY_EVENT.decode(value)


def decoder_for(topic: Topic) -> Decoder:
    return Decoder(topic.events)
