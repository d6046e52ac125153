"""Events on the wire: CloudEvents structured JSON value + ``ce_*`` headers, and back.

Decoding never crashes a consumer with a bare exception: an unknown type raises
``UnknownEventType`` and a value that does not validate raises ``MalformedEvent`` (both
``EventDecodeError``), which the DLQ middleware turns into a dead letter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import AwareDatetime, TypeAdapter, ValidationError

from events import gateway, helix, reseller, sim, sms, webhook  # noqa: F401  (registers types)
from events.envelope import EVENT_TYPES, Event
from events.topics import (
    CLOUDEVENTS_JSON,
    HEADER_CORRELATION,
    HEADER_ID,
    HEADER_SOURCE,
    HEADER_SPECVERSION,
    HEADER_SUBJECT,
    HEADER_TIME,
    HEADER_TYPE,
)

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
# (type, version) -> function turning a raw event of that version into the next version
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


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


def _has_upcasters(event_type: str | None) -> bool:
    return any(t == event_type for t, _ in UPCASTERS)


def upcast(raw: dict[str, Any]) -> dict[str, Any]:
    event_type = raw.get("type")
    version = raw.get("dataversion", 1)
    while isinstance(event_type, str) and isinstance(version, int):
        step = UPCASTERS.get((event_type, version))
        if step is None:
            break
        raw = step(raw)
        version += 1
        raw["dataversion"] = version
    return raw


def decode(value: bytes | str | dict[str, Any], type_hint: str | None = None) -> Event:
    """``type_hint`` (the ``ce_type`` header) lets pydantic parse the JSON in one pass."""
    fast = EVENT_TYPES.get(type_hint) if type_hint else None
    if fast is not None and not isinstance(value, dict) and not _has_upcasters(type_hint):
        try:
            return fast.model_validate_json(value)
        except ValidationError:
            pass  # the header may lie or the value may be broken: take the careful path
    try:
        raw = value if isinstance(value, dict) else json.loads(value)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedEvent(f"not JSON: {err}") from err
    if not isinstance(raw, dict):
        raise MalformedEvent("event is not a JSON object")
    event_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    cls = EVENT_TYPES.get(str(raw.get("type")))
    if cls is None:
        raise UnknownEventType(f"unknown event type {raw.get('type')!r}", event_id)
    try:
        return cls.model_validate(upcast(raw))
    except ValidationError as err:
        raise MalformedEvent(f"invalid {cls.event_type()}: {err}", event_id) from err
