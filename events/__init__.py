"""simfleet events: the envelope, every event type, the topic map and the wire codec."""

from events.codec import EventDecodeError, MalformedEvent, UnknownEventType, decode, encode
from events.envelope import EVENT_TYPES, Event
from events.topics import ALL_TOPICS, Topic, topic_for_type

__all__ = [
    "ALL_TOPICS",
    "EVENT_TYPES",
    "Event",
    "EventDecodeError",
    "MalformedEvent",
    "Topic",
    "UnknownEventType",
    "decode",
    "encode",
    "topic_for_type",
]
