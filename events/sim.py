"""SIM lifecycle facts → topic ``sim.lifecycle`` (key: ICCID).

Requests (``*.requested``) carry a ``ref`` that names the request (a CSV row, a daily tick, an
operator click) and who asked (``requested_by``, see ``infra.actors``; not part of the
identity: the same row imported by two operators is one request); outcomes carry ``request_id``, the id of the event that caused them. Both are
part of the identity, so a redelivered request produces the same outcome id.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field

from events.envelope import REQUESTED_BY, Event, Payload
from events.types import E164, Iccid, Imei, ResellerId

NumberSource = Literal["activation", "rotation", "sync"]
StatusAction = Literal["cancel", "suspend", "restore"]


class SimRequest(Payload):
    iccid: Iccid
    ref: str = Field(description="identity of the request: tick, CSV row, operator action")
    requested_by: str = Field(default="system", description=REQUESTED_BY)
    reason: str | None = Field(default=None, description="the operator's reason (cancel: required)")
    command: str | None = Field(
        default=None,
        description="the operator command this request is part of, where its ref is per SIM "
        "(an import, an assignment); default: the ref",
    )


class SimOutcome(Payload):
    iccid: Iccid
    request_id: str = Field(description="id of the event this outcome answers")


class SimActivationRequestedData(SimRequest):
    imei: Imei
    reseller_id: ResellerId | None = None
    gateway_id: str | None = None
    port: str | None = None


class SimActivationRequested(Event):
    type: Literal["sim.activation_requested"] = "sim.activation_requested"
    data: SimActivationRequestedData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "imei", "ref")


class SimActivatedData(SimOutcome):
    mobility_subscription_id: str
    imei: Imei | None = None


class SimActivated(Event):
    type: Literal["sim.activated"] = "sim.activated"
    data: SimActivatedData


class FailureData(SimOutcome):
    reason: str
    retryable: bool = False
    status_code: int | None = None


class SimActivationFailed(Event):
    type: Literal["sim.activation_failed"] = "sim.activation_failed"
    data: FailureData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "request_id")


class NumberAssignedData(SimOutcome):
    number: E164
    source: NumberSource
    mobility_subscription_id: str | None = None
    previous_number: E164 | None = None


class NumberAssigned(Event):
    type: Literal["number.assigned"] = "number.assigned"
    data: NumberAssignedData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "number", "source", "request_id")


class MdnChangeRequested(Event):
    type: Literal["mdn.change_requested"] = "mdn.change_requested"
    data: SimRequest
    identity: ClassVar[tuple[str, ...]] = ("iccid", "ref")


class MdnChangedData(SimOutcome):
    old_number: E164 | None = None
    new_number: E164
    mobility_subscription_id: str


class MdnChanged(Event):
    type: Literal["mdn.changed"] = "mdn.changed"
    data: MdnChangedData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "request_id")


class MdnChangeFailed(Event):
    type: Literal["mdn.change_failed"] = "mdn.change_failed"
    data: FailureData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "request_id")


class VerificationSentData(SimOutcome):
    number: E164
    code: str = Field(pattern=r"^[A-Z0-9]{6}$")
    sender_iccid: Iccid
    sender_port: str | None = None
    sender_gateway: str | None = None
    sent_at: AwareDatetime
    expires_at: AwareDatetime


class VerificationSent(Event):
    type: Literal["verification.sent"] = "verification.sent"
    data: VerificationSentData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "number", "request_id")


class VerificationSkippedData(SimOutcome):
    number: E164
    reason: str


class VerificationSkipped(Event):
    type: Literal["verification.skipped"] = "verification.skipped"
    data: VerificationSkippedData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "number", "request_id")


class NumberStatusData(SimOutcome):
    number: E164
    mobility_subscription_id: str | None = None
    online_until: AwareDatetime | None = None
    reason: str | None = None


class NumberOnline(Event):
    type: Literal["number.online"] = "number.online"
    data: NumberStatusData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "number", "request_id")


class NumberVerificationFailed(Event):
    type: Literal["number.verification_failed"] = "number.verification_failed"
    data: NumberStatusData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "number", "request_id")


class SimCancelRequested(Event):
    type: Literal["sim.cancel_requested"] = "sim.cancel_requested"
    data: SimRequest
    identity: ClassVar[tuple[str, ...]] = ("iccid", "ref")


class SimSuspendRequested(Event):
    type: Literal["sim.suspend_requested"] = "sim.suspend_requested"
    data: SimRequest
    identity: ClassVar[tuple[str, ...]] = ("iccid", "ref")


class SimRestoreRequested(Event):
    type: Literal["sim.restore_requested"] = "sim.restore_requested"
    data: SimRequest
    identity: ClassVar[tuple[str, ...]] = ("iccid", "ref")


class StatusChangedData(SimOutcome):
    mobility_subscription_id: str | None = None
    number: E164 | None = None


class SimCancelled(Event):
    type: Literal["sim.cancelled"] = "sim.cancelled"
    data: StatusChangedData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "request_id")


class SimSuspended(Event):
    type: Literal["sim.suspended"] = "sim.suspended"
    data: StatusChangedData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "request_id")


class SimRestored(Event):
    type: Literal["sim.restored"] = "sim.restored"
    data: StatusChangedData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "request_id")


class SimCancelFailed(Event):
    type: Literal["sim.cancel_failed"] = "sim.cancel_failed"
    data: FailureData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "request_id")


class StatusChangeFailedData(FailureData):
    action: StatusAction


class SimStatusChangeFailed(Event):
    type: Literal["sim.status_change_failed"] = "sim.status_change_failed"
    data: StatusChangeFailedData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "action", "request_id")


class SimResellerAssignedData(SimRequest):
    reseller_id: ResellerId
    previous_reseller_id: ResellerId | None = Field(
        default=None, description="the reseller the SIM leaves, where it had one"
    )
    number: E164 | None = Field(
        default=None, description="the SIM's number when it moved (it leaves the previous reseller)"
    )


class SimResellerAssigned(Event):
    type: Literal["sim.reseller_assigned"] = "sim.reseller_assigned"
    data: SimResellerAssignedData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "reseller_id", "ref")


class SyncRequested(Event):
    type: Literal["sync.requested"] = "sync.requested"
    data: SimRequest
    identity: ClassVar[tuple[str, ...]] = ("iccid", "ref")


class VerificationRequestedData(SimRequest):
    number: E164 | None = None
    attempt: int = Field(
        default=1, ge=1, description="2 for the automatic retry after a timed-out verification"
    )
    avoid_senders: tuple[Iccid, ...] = Field(
        default=(), description="senders of earlier attempts: chosen only if no other can send"
    )
    avoid_gateways: tuple[str, ...] = Field(
        default=(), description="their gateways: another gateway's sender is preferred"
    )
    started_at: AwareDatetime | None = Field(
        default=None,
        description="when the number's first verification SMS was sent: the retries' budget "
        "(VERIFICATION_BUDGET_S) runs from there",
    )


class VerificationRequested(Event):
    type: Literal["verification.requested"] = "verification.requested"
    data: VerificationRequestedData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "ref")


class SimInboundSilentData(Payload):
    iccid: Iccid
    number: E164 | None = None
    reseller_id: ResellerId | None = None
    silent_since: AwareDatetime = Field(
        description="the SIM's last SMS, or its number's verification if later: quiet since then"
    )
    threshold_s: float = Field(description="the quiet that counts as silence for this SIM")


class SimInboundSilent(Event):
    """An online SIM (number verified, gateway port registered) received no SMS for its
    threshold. Once per silence: the id is over the SIM and the start of the quiet."""

    type: Literal["sim.inbound_silent"] = "sim.inbound_silent"
    data: SimInboundSilentData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "silent_since")


class SimInboundResumedData(Payload):
    iccid: Iccid
    silent_event_id: str = Field(description="the sim.inbound_silent this ends")
    silent_since: AwareDatetime
    message_id: str = Field(description="the sms.received that ended the silence")
    resumed_at: AwareDatetime = Field(description="that SMS's time")


class SimInboundResumed(Event):
    type: Literal["sim.inbound_resumed"] = "sim.inbound_resumed"
    data: SimInboundResumedData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "silent_event_id")


class VerificationSenderSuspectData(Payload):
    iccid: Iccid = Field(description="the sender SIM")
    unanswered: int = Field(description="its verification SMS unanswered in a row")
    request_id: str = Field(description="the verification.sent whose timeout made it suspect")


class VerificationSenderSuspect(Event):
    """A SIM whose verification SMS repeatedly go unanswered: avoided as a sender until one of
    its verification SMS is answered (``verification.sender_cleared``)."""

    type: Literal["verification.sender_suspect"] = "verification.sender_suspect"
    data: VerificationSenderSuspectData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "request_id")


class VerificationSenderClearedData(Payload):
    iccid: Iccid = Field(description="the sender SIM")
    suspect_event_id: str = Field(description="the verification.sender_suspect this ends")
    request_id: str = Field(description="the verification.sent that was answered")


class VerificationSenderCleared(Event):
    type: Literal["verification.sender_cleared"] = "verification.sender_cleared"
    data: VerificationSenderClearedData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "suspect_event_id")


AttentionAction = Literal["activate", "cancel", "suspend", "restore", "rotate"]


class SimOperatorNeededData(Payload):
    iccid: Iccid
    action: AttentionAction = Field(description="what kept failing")
    reason: str = Field(description="the last failure's reason")
    attempts: int = Field(description="failures in a row when it was given up")
    request_id: str = Field(description="the request whose failure made it give up")


class SimOperatorNeeded(Event):
    """An action kept failing and is no longer retried by itself: a retryable carrier failure
    past ``HX_REQUEST_MAX_ATTEMPTS``, or a rotation failing ``ROTATION_PARK_AFTER`` times in a
    row (the SIM is parked: no daily rotation until one succeeds). Cleared on the SIM by the
    next success of that action."""

    type: Literal["sim.operator_needed"] = "sim.operator_needed"
    data: SimOperatorNeededData
    identity: ClassVar[tuple[str, ...]] = ("iccid", "action", "request_id")


# what ``sim.lifecycle`` carries: one class per ``type``, told apart by it
SimLifecycleEvent = Annotated[
    SimActivationRequested
    | SimActivated
    | SimActivationFailed
    | NumberAssigned
    | MdnChangeRequested
    | MdnChanged
    | MdnChangeFailed
    | VerificationSent
    | VerificationSkipped
    | NumberOnline
    | NumberVerificationFailed
    | SimCancelRequested
    | SimCancelled
    | SimCancelFailed
    | SimSuspendRequested
    | SimSuspended
    | SimRestoreRequested
    | SimRestored
    | SimStatusChangeFailed
    | SimResellerAssigned
    | SyncRequested
    | VerificationRequested
    | SimInboundSilent
    | SimInboundResumed
    | VerificationSenderSuspect
    | VerificationSenderCleared
    | SimOperatorNeeded,
    Field(discriminator="type"),
]
