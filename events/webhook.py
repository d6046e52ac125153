"""Webhook delivery facts → ``webhook.deliveries`` and ``webhook.retry`` (key: endpoint id)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field

from events.envelope import Event, Payload
from events.types import EndpointId


class DeliveryAttempt(Payload):
    message_id: str = Field(description="the delivered event's id (= webhook-id)")
    endpoint_id: EndpointId
    reseller_id: str
    event_type: str
    attempt: int = Field(ge=1)
    status_code: int | None = None
    latency_ms: float | None = None
    attempted_at: AwareDatetime
    response: str | None = Field(
        default=None, description="the start of the endpoint's answer (300 bytes, one line)"
    )


class WebhookDeliverySucceeded(Event):
    type: Literal["webhook.delivery_succeeded"] = "webhook.delivery_succeeded"
    data: DeliveryAttempt
    identity: ClassVar[tuple[str, ...]] = ("message_id", "endpoint_id", "attempt")
    subject_field: ClassVar[str] = "endpoint_id"


class DeliveryFailureData(DeliveryAttempt):
    error: str
    final: bool = Field(description="no further attempt will be made")
    next_attempt_at: AwareDatetime | None = None


class WebhookDeliveryFailed(Event):
    type: Literal["webhook.delivery_failed"] = "webhook.delivery_failed"
    data: DeliveryFailureData
    identity: ClassVar[tuple[str, ...]] = ("message_id", "endpoint_id", "attempt")
    subject_field: ClassVar[str] = "endpoint_id"


class WebhookRetryScheduledData(Payload):
    message_id: str
    endpoint_id: EndpointId
    reseller_id: str
    event_type: str
    attempt: int = Field(ge=1, description="the attempt this retry will make")
    due_at: AwareDatetime
    body: str = Field(description="the exact JSON body to sign and send")


class WebhookRetryScheduled(Event):
    type: Literal["webhook.retry_scheduled"] = "webhook.retry_scheduled"
    data: WebhookRetryScheduledData
    identity: ClassVar[tuple[str, ...]] = ("message_id", "endpoint_id", "attempt")
    subject_field: ClassVar[str] = "endpoint_id"


# what ``webhook.deliveries`` carries: one class per ``type``, told apart by it
WebhookDeliveryEvent = Annotated[
    WebhookDeliverySucceeded | WebhookDeliveryFailed,
    Field(discriminator="type"),
]
