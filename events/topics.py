"""The topic map: name, partition key, default partitions and the event types each may carry.

A topic is given the class of its one event type or the discriminated union of its types
(``events.sim.SimLifecycleEvent``…); its list of type strings is read off that, never written
a second time.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any

from events import gateway, helix, reseller, sim, sms, webhook
from events.envelope import Event

HEADER_ID = "ce_id"
HEADER_TYPE = "ce_type"
HEADER_TIME = "ce_time"
HEADER_SOURCE = "ce_source"
HEADER_SUBJECT = "ce_subject"
HEADER_SPECVERSION = "ce_specversion"
HEADER_CORRELATION = "ce_correlationid"
CLOUDEVENTS_JSON = "application/cloudevents+json"


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    partitions: int
    events: Any = None  # an Event class or an Annotated union of them; None: any (a DLQ)
    members: tuple[type[Event], ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", event_classes(self.events))

    @property
    def types(self) -> frozenset[str]:
        return frozenset(cls.event_type() for cls in self.members)

    def full_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}"

    @property
    def dlq(self) -> Topic:
        return Topic(f"{self.name}.dlq", self.key, self.partitions)


def event_classes(carried: Any) -> tuple[type[Event], ...]:
    """The event classes of ``X``, ``X | Y`` or ``Annotated[X | Y, …]``, in declaration order."""
    if carried is None:
        return ()
    if typing.get_origin(carried) is typing.Annotated:
        return event_classes(typing.get_args(carried)[0])
    if typing.get_origin(carried) in (typing.Union, types.UnionType):
        return tuple(c for arg in typing.get_args(carried) for c in event_classes(arg))
    if isinstance(carried, type) and issubclass(carried, Event):
        return (carried,)
    raise TypeError(f"a topic carries Event classes, not {carried!r}")


SMS_INBOUND = Topic(
    "sms.inbound",
    "receiving number (E.164): sms.received: the push's receiving number, else the current "
    "number of the receiving SIM (by the pushed ICCID, else by the gateway port it arrived on); "
    "only when no SIM is known yet its ICCID, else '<gateway id>:<port>'. "
    "sms.delivery_reported: the recipient of the reported SMS",
    6,
    sms.SmsInboundEvent,
)
GATEWAY_STATUS = Topic("gateway.status", "gateway id", 3, gateway.GatewayStatusReported)
SIM_LIFECYCLE = Topic("sim.lifecycle", "ICCID", 6, sim.SimLifecycleEvent)
RESELLER_REGISTRY = Topic("reseller.registry", "reseller id", 3, reseller.ResellerRegistryEvent)
RESELLER_USAGE = Topic("reseller.usage", "reseller id", 3, reseller.ResellerTokenUsed)
WEBHOOK_DELIVERIES = Topic("webhook.deliveries", "endpoint id", 6, webhook.WebhookDeliveryEvent)
WEBHOOK_RETRY = Topic("webhook.retry", "endpoint id", 6, webhook.WebhookRetryScheduled)
HELIX_CALLS = Topic(
    "helix.calls", "ICCID, else subscription id, else operation", 3, helix.HelixApiCalled
)
GATEWAY_REJECTED = Topic("gateway.rejected", "gateway id", 1, gateway.GatewayPayloadRejected)

ALL_TOPICS: tuple[Topic, ...] = (
    SMS_INBOUND,
    GATEWAY_STATUS,
    SIM_LIFECYCLE,
    RESELLER_REGISTRY,
    RESELLER_USAGE,
    WEBHOOK_DELIVERIES,
    WEBHOOK_RETRY,
    HELIX_CALLS,
    GATEWAY_REJECTED,
)


def _topics_by_type() -> dict[str, Topic]:
    found: dict[str, Topic] = {}
    for topic in ALL_TOPICS:
        for event_type in topic.types:
            found.setdefault(event_type, topic)  # the first topic to carry it, as listed
    return found


# looked up once per event published: a dict, not a walk over every topic's classes
_TOPIC_OF_TYPE = _topics_by_type()


def topic_for_type(event_type: str) -> Topic:
    topic = _TOPIC_OF_TYPE.get(event_type)
    if topic is None:
        raise KeyError(f"no topic carries event type {event_type!r}")
    return topic


def all_topics_with_dlqs() -> tuple[Topic, ...]:
    return ALL_TOPICS + tuple(t.dlq for t in ALL_TOPICS)
