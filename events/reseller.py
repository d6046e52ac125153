"""Reseller registry facts → topic ``reseller.registry`` (key: reseller id); a token's uses →
``reseller.usage`` (same key).

Signing secrets never travel in clear: endpoints carry the secret sealed with the deployment's
key (see the webhook issue), so events and the archive hold no usable secret.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field

from events.envelope import REQUESTED_BY, Event, Payload, canonical_id
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
        default=None,
        description="the delivery whose answer disabled the endpoint (410), or the last one "
        "that failed before it was disabled for failing too long",
    )
    status_code: int | None = None
    failing_since: AwareDatetime | None = Field(
        default=None, description="disabled for failing: the start of the failures"
    )
    ref: str | None = Field(default=None, description="paused on request: the request's ref")
    requested_by: str = Field(default="system", description=REQUESTED_BY)


class WebhookEndpointDisabled(Event):
    """The endpoint stays registered (history, re-adding, re-enabling) but receives nothing more:
    on 410 Gone, or after failing everything for ``WEBHOOK_DISABLE_AFTER_S``."""

    type: Literal["webhook.endpoint_disabled"] = "webhook.endpoint_disabled"
    data: WebhookEndpointDisabledData
    # failing_since tells two disables apart that end on the same message (disabled, re-enabled
    # with that message resent, failing again): the same fact twice would otherwise share an id
    identity: ClassVar[tuple[str, ...]] = (
        "reseller_id",
        "endpoint_id",
        "message_id",
        "failing_since",
    )
    subject_field: ClassVar[str] = "reseller_id"

    @classmethod
    def id_for(cls, data: Payload) -> str:
        # a pause is a request (one per ref); a disable by the health rules keeps its old id
        if isinstance(data, WebhookEndpointDisabledData) and data.ref is not None:
            identity = {"endpoint_id": data.endpoint_id, "ref": data.ref}
            return canonical_id(cls.event_type(), identity)
        return super().id_for(data)


class WebhookEndpointFailingData(Payload):
    reseller_id: ResellerId
    endpoint_id: EndpointId
    since: AwareDatetime = Field(description="the first failed attempt after the last success")
    failures: int = Field(ge=1, description="failed attempts in a row so far")
    last_error: str | None = None
    last_status_code: int | None = None


class WebhookEndpointFailing(Event):
    """Every recent attempt failed: the endpoint is down (or refusing) but still receives."""

    type: Literal["webhook.endpoint_failing"] = "webhook.endpoint_failing"
    data: WebhookEndpointFailingData
    identity: ClassVar[tuple[str, ...]] = ("reseller_id", "endpoint_id", "since")
    subject_field: ClassVar[str] = "reseller_id"


class WebhookEndpointRecoveredData(Payload):
    reseller_id: ResellerId
    endpoint_id: EndpointId
    failing_since: AwareDatetime
    message_id: str = Field(description="the delivery that succeeded")


class WebhookEndpointRecovered(Event):
    type: Literal["webhook.endpoint_recovered"] = "webhook.endpoint_recovered"
    data: WebhookEndpointRecoveredData
    identity: ClassVar[tuple[str, ...]] = ("reseller_id", "endpoint_id", "failing_since")
    subject_field: ClassVar[str] = "reseller_id"


class WebhookEndpointEnabledData(Payload):
    reseller_id: ResellerId
    endpoint_id: EndpointId
    ref: str
    requested_by: str = "system"


class WebhookEndpointEnabled(Event):
    """An operator re-enabled a disabled endpoint; it receives again (health: healthy). What it
    missed is sent again by a ``webhook.resend_requested`` of the same command, if asked."""

    type: Literal["webhook.endpoint_enabled"] = "webhook.endpoint_enabled"
    data: WebhookEndpointEnabledData
    identity: ClassVar[tuple[str, ...]] = ("reseller_id", "endpoint_id", "ref")
    subject_field: ClassVar[str] = "reseller_id"


TokenScope = Literal["read", "read-write"]


class ResellerTokenIssuedData(Payload):
    reseller_id: ResellerId
    token_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100, description="the token's name, as audited")
    scope: TokenScope
    token_hash: str = Field(
        description="SHA-256 of the token (hex); the token itself is shown once, never kept"
    )
    expires_at: AwareDatetime
    requested_by: str = Field(default="system", description=REQUESTED_BY)


class ResellerTokenIssued(Event):
    """An operator issued a reseller API token (the reseller portal and ``/reseller/v1``)."""

    type: Literal["reseller.token_issued"] = "reseller.token_issued"
    data: ResellerTokenIssuedData
    identity: ClassVar[tuple[str, ...]] = ("reseller_id", "token_id")
    subject_field: ClassVar[str] = "reseller_id"


class ResellerTokenRevokedData(Payload):
    reseller_id: ResellerId
    token_id: str = Field(min_length=1, max_length=64)
    ref: str
    requested_by: str = Field(default="system", description=REQUESTED_BY)
    reason: str | None = Field(default=None, description="the operator's reason")


class ResellerTokenRevoked(Event):
    type: Literal["reseller.token_revoked"] = "reseller.token_revoked"
    data: ResellerTokenRevokedData
    identity: ClassVar[tuple[str, ...]] = ("reseller_id", "token_id", "ref")
    subject_field: ClassVar[str] = "reseller_id"


class TokenUseData(Payload):
    method: str = Field(min_length=1, max_length=10, description="the HTTP method")
    path: str = Field(
        min_length=1, max_length=300, description="the path called, without its query string"
    )
    requests: int = Field(ge=1, description="how many requests to it in the batch")
    first_at: AwareDatetime
    last_at: AwareDatetime


class ResellerTokenUsedData(Payload):
    reseller_id: ResellerId
    token_id: str = Field(min_length=1, max_length=64)
    token_name: str = Field(min_length=1, max_length=100, description="as the audit names it")
    requested_by: str = Field(description="the actor: reseller:<reseller id>/<token name>")
    ref: str = Field(description="the batch: unique per process and batch")
    requests: int = Field(ge=1, description="every request in the batch")
    uses: list[TokenUseData] = Field(
        max_length=100, description="per method and path, in first-use order"
    )


class ResellerTokenUsed(Event):
    """A reseller API token was used (``/reseller/v1`` or ``/portal``): one batch of its requests.

    Coalesced per token and process: the requests of one flush interval
    (``RESELLER_API_USE_FLUSH_S``) are one event, counted per method and path; a batch is closed
    early at 100 distinct paths. Carries the token's name, never the token."""

    type: Literal["reseller.token_used"] = "reseller.token_used"
    data: ResellerTokenUsedData
    identity: ClassVar[tuple[str, ...]] = ("reseller_id", "token_id", "ref")
    subject_field: ClassVar[str] = "reseller_id"


# what ``reseller.registry`` carries: one class per ``type``, told apart by it
ResellerRegistryEvent = Annotated[
    ResellerCreated
    | WebhookEndpointAdded
    | WebhookEndpointRemoved
    | WebhookResendRequested
    | WebhookSecretRotated
    | WebhookEndpointDisabled
    | WebhookEndpointFailing
    | WebhookEndpointRecovered
    | WebhookEndpointEnabled
    | ResellerTokenIssued
    | ResellerTokenRevoked,
    Field(discriminator="type"),
]
