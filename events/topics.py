"""The topic map: name, partition key, default partitions and the event types each may carry."""

from __future__ import annotations

from dataclasses import dataclass

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
    types: frozenset[str]

    def full_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}"

    @property
    def dlq(self) -> Topic:
        return Topic(f"{self.name}.dlq", self.key, self.partitions, frozenset())


SMS_INBOUND = Topic(
    "sms.inbound",
    "receiving number (E.164): sms.received: the push's receiving number, else the current "
    "number of the receiving SIM (by the pushed ICCID, else by the gateway port it arrived on); "
    "only when no SIM is known yet its ICCID, else '<gateway id>:<port>'. "
    "sms.delivery_reported: the recipient of the reported SMS",
    6,
    frozenset({"sms.received", "sms.delivery_reported"}),
)
GATEWAY_STATUS = Topic("gateway.status", "gateway id", 3, frozenset({"gateway.status_reported"}))
SIM_LIFECYCLE = Topic(
    "sim.lifecycle",
    "ICCID",
    6,
    frozenset(
        {
            "sim.activation_requested",
            "sim.activated",
            "sim.activation_failed",
            "number.assigned",
            "mdn.change_requested",
            "mdn.changed",
            "mdn.change_failed",
            "verification.sent",
            "verification.skipped",
            "number.online",
            "number.verification_failed",
            "sim.cancel_requested",
            "sim.cancelled",
            "sim.cancel_failed",
            "sim.suspend_requested",
            "sim.suspended",
            "sim.restore_requested",
            "sim.restored",
            "sim.status_change_failed",
            "sim.reseller_assigned",
            "sync.requested",
            "verification.requested",
            "sim.inbound_silent",
            "sim.inbound_resumed",
            "verification.sender_suspect",
            "verification.sender_cleared",
            "sim.operator_needed",
        }
    ),
)
RESELLER_REGISTRY = Topic(
    "reseller.registry",
    "reseller id",
    3,
    frozenset(
        {
            "reseller.created",
            "webhook.endpoint_added",
            "webhook.endpoint_removed",
            "webhook.resend_requested",
            "webhook.secret_rotated",
            "webhook.endpoint_disabled",
            "webhook.endpoint_failing",
            "webhook.endpoint_recovered",
            "webhook.endpoint_enabled",
            "reseller.token_issued",
            "reseller.token_revoked",
        }
    ),
)
# kept apart from the registry: a busy token's uses expire (Kafka and archive retention) while
# the registry is kept for good
RESELLER_USAGE = Topic("reseller.usage", "reseller id", 3, frozenset({"reseller.token_used"}))
WEBHOOK_DELIVERIES = Topic(
    "webhook.deliveries",
    "endpoint id",
    6,
    frozenset({"webhook.delivery_succeeded", "webhook.delivery_failed"}),
)
WEBHOOK_RETRY = Topic("webhook.retry", "endpoint id", 6, frozenset({"webhook.retry_scheduled"}))
HELIX_CALLS = Topic(
    "helix.calls", "ICCID, else subscription id, else operation", 3, frozenset({"helix.api_called"})
)
GATEWAY_REJECTED = Topic(
    "gateway.rejected", "gateway id", 1, frozenset({"gateway.payload_rejected"})
)

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


def topic_for_type(event_type: str) -> Topic:
    for topic in ALL_TOPICS:
        if event_type in topic.types:
            return topic
    raise KeyError(f"no topic carries event type {event_type!r}")


def all_topics_with_dlqs() -> tuple[Topic, ...]:
    return ALL_TOPICS + tuple(t.dlq for t in ALL_TOPICS)
