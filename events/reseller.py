"""Reseller registry facts → topic ``reseller.registry`` (key: reseller id).

Signing secrets never travel in clear: endpoints carry the secret sealed with the deployment's
key (see the webhook issue), so events and the archive hold no usable secret.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from events.envelope import REQUESTED_BY, Event, Payload
from events.types import EndpointId, ResellerId


class ResellerCreatedData(Payload):
    reseller_id: ResellerId
    name: str = Field(min_length=1, max_length=200)
    requested_by: str = Field(default="system", description=REQUESTED_BY)


class ResellerCreated(Event):
    type: Literal["reseller.created"] = "reseller.created"
    data: ResellerCreatedData
    identity: ClassVar[tuple[str, ...]] = ("reseller_id",)
    subject_field: ClassVar[str] = "reseller_id"


class WebhookEndpointAddedData(Payload):
    reseller_id: ResellerId
    endpoint_id: EndpointId
    url: str
    event_types: tuple[str, ...] = Field(description="subscribed types; empty = all")
    sealed_secret: str = Field(description="signing secret encrypted with the deployment key")
    enabled: bool = True
    requested_by: str = Field(default="system", description=REQUESTED_BY)


class WebhookEndpointAdded(Event):
    type: Literal["webhook.endpoint_added"] = "webhook.endpoint_added"
    data: WebhookEndpointAddedData
    identity: ClassVar[tuple[str, ...]] = ("reseller_id", "endpoint_id", "sealed_secret")
    subject_field: ClassVar[str] = "reseller_id"


class WebhookEndpointRemovedData(Payload):
    reseller_id: ResellerId
    endpoint_id: EndpointId
    ref: str
    requested_by: str = Field(default="system", description=REQUESTED_BY)
    reason: str | None = Field(default=None, description="the operator's reason")


class WebhookEndpointRemoved(Event):
    type: Literal["webhook.endpoint_removed"] = "webhook.endpoint_removed"
    data: WebhookEndpointRemovedData
    identity: ClassVar[tuple[str, ...]] = ("reseller_id", "endpoint_id", "ref")
    subject_field: ClassVar[str] = "reseller_id"


class WebhookResendRequestedData(Payload):
    reseller_id: ResellerId
    ref: str
    message_ids: tuple[str, ...] = ()
    endpoint_id: EndpointId | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    only_failed: bool = False
    requested_by: str = Field(default="system", description=REQUESTED_BY)
    reason: str | None = Field(default=None, description="the operator's reason")


class WebhookResendRequested(Event):
    type: Literal["webhook.resend_requested"] = "webhook.resend_requested"
    data: WebhookResendRequestedData
    identity: ClassVar[tuple[str, ...]] = ("reseller_id", "ref")
    subject_field: ClassVar[str] = "reseller_id"


class WebhookSecretRotatedData(Payload):
    reseller_id: ResellerId
    endpoint_id: EndpointId
    sealed_secret: str = Field(description="the new signing secret, sealed with the deployment key")
    previous_valid_until: AwareDatetime = Field(
        description="until then the previous secret signs too (both signatures are sent)"
    )
    ref: str
    requested_by: str = Field(default="system", description=REQUESTED_BY)
    reason: str | None = Field(default=None, description="the operator's reason")


class WebhookSecretRotated(Event):
    type: Literal["webhook.secret_rotated"] = "webhook.secret_rotated"
    data: WebhookSecretRotatedData
    identity: ClassVar[tuple[str, ...]] = ("reseller_id", "endpoint_id", "ref")
    subject_field: ClassVar[str] = "reseller_id"


class WebhookEndpointDisabledData(Payload):
    reseller_id: ResellerId
    endpoint_id: EndpointId
    reason: str
    message_id: str | None = Field(
        default=None, description="the delivery whose answer disabled the endpoint"
    )
    status_code: int | None = None


class WebhookEndpointDisabled(Event):
    """The endpoint stays registered (history, re-adding) but receives nothing more."""

    type: Literal["webhook.endpoint_disabled"] = "webhook.endpoint_disabled"
    data: WebhookEndpointDisabledData
    identity: ClassVar[tuple[str, ...]] = ("reseller_id", "endpoint_id", "message_id")
    subject_field: ClassVar[str] = "reseller_id"
