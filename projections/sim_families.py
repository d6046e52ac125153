"""The families of ``sim.lifecycle`` events that several projections treat alike, named once.

Every type on the topic is a request, an outcome, or the reseller assignment (a request that is
also a fact about the SIM). As tuples of classes these narrow the type of an event in
``isinstance`` (in a ``match`` guard too), so a projection's ``match`` stays exhaustive
(``assert_never``) without listing the whole topic again.
"""

from __future__ import annotations

from typing import Final

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

# what an operator (or a flow on an operator's behalf) asked for
SIM_REQUESTS: Final = (
    SimActivationRequested,
    MdnChangeRequested,
    SyncRequested,
    SimCancelRequested,
    SimSuspendRequested,
    SimRestoreRequested,
    VerificationRequested,
)
# what the carrier, the gateways and simfleet's own flows report: nobody asked for it by name
SIM_OUTCOMES: Final = (
    SimActivated,
    SimActivationFailed,
    NumberAssigned,
    MdnChanged,
    MdnChangeFailed,
    VerificationSent,
    VerificationSkipped,
    NumberOnline,
    NumberVerificationFailed,
    SimCancelled,
    SimCancelFailed,
    SimSuspended,
    SimRestored,
    SimStatusChangeFailed,
    SimInboundSilent,
    SimInboundResumed,
    VerificationSenderSuspect,
    VerificationSenderCleared,
    SimOperatorNeeded,
)
