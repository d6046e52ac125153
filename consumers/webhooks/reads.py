"""What the webhook consumer reads: every type its topics carry, handled or ignored with a reason.

The consumer's topics (``SOURCES``) carry many more types than it acts on. Each type of each of
them is declared here once, either handled (``Handled``, the union its ``match`` ends on with
``assert_never``) or ignored with the reason it needs no webhook; the types are read off the
topics' unions (``events.topics``), so a type a topic gains is neither until it is declared
(``tests/unit/test_webhook_reads.py`` fails meanwhile). Only handled types are decoded: the
others are skipped by their ``ce_type`` header, unparsed, on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, assert_never

from pydantic import Field

from events.codec import Decoder
from events.envelope import Event
from events.reseller import (
    ResellerCreated,
    ResellerTokenIssued,
    ResellerTokenRevoked,
    WebhookEndpointAdded,
    WebhookEndpointDisabled,
    WebhookEndpointEnabled,
    WebhookEndpointFailing,
    WebhookEndpointRecovered,
    WebhookEndpointRemoved,
    WebhookResendRequested,
    WebhookSecretRotated,
)
from events.sim import (
    MdnChanged,
    MdnChangeFailed,
    MdnChangeRequested,
    NumberAssigned,
    NumberOnline,
    NumberVerificationFailed,
    SimActivated,
    SimActivationFailed,
    SimActivationRequested,
    SimCancelFailed,
    SimCancelled,
    SimCancelRequested,
    SimInboundResumed,
    SimInboundSilent,
    SimOperatorNeeded,
    SimResellerAssigned,
    SimRestored,
    SimRestoreRequested,
    SimStatusChangeFailed,
    SimSuspended,
    SimSuspendRequested,
    SyncRequested,
    VerificationRequested,
    VerificationSenderCleared,
    VerificationSenderSuspect,
    VerificationSent,
    VerificationSkipped,
)
from events.sms import SmsDeliveryReported, SmsReceived
from events.topics import RESELLER_REGISTRY, SIM_LIFECYCLE, SMS_INBOUND, WEBHOOK_RETRY, Topic
from events.webhook import WebhookRetryScheduled

SOURCES: tuple[Topic, ...] = (SMS_INBOUND, SIM_LIFECYCLE, WEBHOOK_RETRY, RESELLER_REGISTRY)

# a webhook of its own (sms.received, number.online, number.verification_failed,
# sim.cancelled) or a number taken from a reseller (number.offline): both, for a cancellation
Change = (
    SmsReceived
    | NumberOnline
    | NumberVerificationFailed
    | SimCancelled
    | MdnChanged
    | NumberAssigned
    | SimResellerAssigned
)
Handled = Change | WebhookRetryScheduled | WebhookResendRequested | WebhookEndpointEnabled

_NO_RESELLER_FACT = "a step inside simfleet; the reseller hears of its outcome, if any"
IGNORED: dict[type[Event], str] = {
    SmsDeliveryReported: "a gateway's report on an SMS we sent (verification), not an SMS received",
    SimActivationRequested: _NO_RESELLER_FACT,
    SimActivated: "the number follows as number.assigned, and reaches resellers once verified",
    SimActivationFailed: "the operator's to resolve; the SIM never reached a reseller",
    MdnChangeRequested: _NO_RESELLER_FACT,
    MdnChangeFailed: "the number is unchanged: nothing to tell",
    VerificationSent: _NO_RESELLER_FACT,
    VerificationSkipped: _NO_RESELLER_FACT,
    SimCancelRequested: _NO_RESELLER_FACT,
    SimCancelFailed: "the SIM stays active: nothing to tell",
    SimSuspendRequested: _NO_RESELLER_FACT,
    SimSuspended: "no webhook type tells a suspension (EXTERNAL_APIS §3)",
    SimRestoreRequested: _NO_RESELLER_FACT,
    SimRestored: "no webhook type tells a restore (EXTERNAL_APIS §3)",
    SimStatusChangeFailed: "the status is unchanged: nothing to tell",
    SyncRequested: _NO_RESELLER_FACT,
    VerificationRequested: _NO_RESELLER_FACT,
    SimInboundSilent: "an operator alert, not a reseller fact",
    SimInboundResumed: "an operator alert, not a reseller fact",
    VerificationSenderSuspect: "about our own verification senders",
    VerificationSenderCleared: "about our own verification senders",
    SimOperatorNeeded: "the operator's to act on",
    ResellerCreated: "the endpoint directory is read from reseller_webhooks",
    WebhookEndpointAdded: "the endpoint directory is read from reseller_webhooks",
    WebhookEndpointRemoved: "the endpoint directory is read from reseller_webhooks",
    WebhookSecretRotated: "the endpoint directory re-reads secrets every few seconds",
    WebhookEndpointDisabled: "a disabled endpoint is read from reseller_webhooks",
    WebhookEndpointFailing: "endpoint health's, shown to the reseller by the read tables",
    WebhookEndpointRecovered: "endpoint health's, shown to the reseller by the read tables",
    ResellerTokenIssued: "reseller API tokens: not the webhook flow's",
    ResellerTokenRevoked: "reseller API tokens: not the webhook flow's",
}

HANDLED_DECODER = Decoder(Annotated[Handled, Field(discriminator="type")])
WANTED_TYPES = HANDLED_DECODER.types


@dataclass
class Batch:
    """A batch's handled events by what they ask for; the changes in the order they came (a
    number's ``number.offline`` before a later ``number.online``)."""

    changes: list[Change] = field(default_factory=list)
    enabled: list[WebhookEndpointEnabled] = field(default_factory=list)
    resends: list[WebhookResendRequested] = field(default_factory=list)
    retries: list[WebhookRetryScheduled] = field(default_factory=list)


def sorted_batch(events: Iterable[Handled]) -> Batch:
    batch = Batch()
    for event in events:
        match event:
            case (
                SmsReceived()
                | NumberOnline()
                | NumberVerificationFailed()
                | SimCancelled()
                | MdnChanged()
                | NumberAssigned()
                | SimResellerAssigned()
            ):
                batch.changes.append(event)
            case WebhookEndpointEnabled():
                batch.enabled.append(event)
            case WebhookResendRequested():
                batch.resends.append(event)
            case WebhookRetryScheduled():
                batch.retries.append(event)
            case _:
                assert_never(event)
    return batch
