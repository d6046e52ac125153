"""Pure decisions of the provisioning consumers (activation, finalizer, canceller, number sync)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from events.sim import NumberAssigned, SimActivationFailed, StatusAction
from infra.helix.errors import ALREADY_ACTIVE, HelixError, HelixOutcomeUnknown
from infra.helix.models import SubscriberDetails

Finalization = Literal["assign", "wait", "failed"]

INTERRUPTED = (
    "outcome unknown: an earlier attempt of this request was interrupted and the carrier now "
    "reports the ICCID active; look the line up before activating again"
)


def activation_failure(err: HelixError, *, retried: bool) -> tuple[str, bool]:
    """(reason, retryable) for an activation that raised.

    "Already active" on a request we attempted before is most likely our own lost activation,
    so it is reported as unknown — never as a plain rejection, and never retried blindly.
    """
    if isinstance(err, HelixOutcomeUnknown):
        return f"outcome unknown: {err}", False
    if retried and not err.retryable and ALREADY_ACTIVE in err.reason.lower():
        return INTERRUPTED, False
    return err.reason, err.retryable


def finalization(details: SubscriberDetails) -> Finalization:
    if details.has_failed:
        return "failed"
    return "assign" if details.phone_number else "wait"


def finalize_outcome(
    details: SubscriberDetails,
    *,
    iccid: str,
    activation_id: str,
    correlationid: str,
    producer: str,
    now: datetime,
) -> NumberAssigned | SimActivationFailed | None:
    """What a new line's details say: its number, a failed activation, or nothing yet.

    The finalizer, its sweep and a "finalize" sync all answer the same ``sim.activated``
    (``activation_id``), so they produce the same event ids and duplicates collapse.
    """
    match finalization(details):
        case "assign":
            return NumberAssigned.create(
                producer=producer,
                time=now,
                correlationid=correlationid,
                iccid=iccid,
                request_id=activation_id,
                number=details.number,
                source="activation",
                mobility_subscription_id=details.mobility_subscription_id,
            )
        case "failed":
            reason = details.status_reason or details.status
            return SimActivationFailed.create(
                producer=producer,
                time=now,
                correlationid=correlationid,
                iccid=iccid,
                request_id=activation_id,
                reason=f"the carrier reports the activation failed: {reason}",
                retryable=False,
            )
    return None


def number_poll_delays(wait_s: float, first_s: float, cap_s: float = 4.0) -> list[float]:
    """Pauses between re-reads of a new line's details: doubling, capped, within ``wait_s``."""
    delays: list[float] = []
    delay = first_s
    while delay > 0 and sum(delays) + delay <= wait_s:
        delays.append(delay)
        delay = min(delay * 2, cap_s)
    return delays


def already_in_state(action: StatusAction, details: SubscriberDetails) -> bool:
    """The line is already where the action would take it: the request counts as done."""
    status = details.status.upper()
    if action == "cancel":
        return details.is_cancelled
    if action == "suspend":
        return status == "SUSPENDED"
    return details.is_active


def drifted(ours: str | None, carrier: str | None) -> bool:
    """The carrier reports a number and it is not the one we know (both E.164)."""
    return carrier is not None and carrier != ours


def sync_ref(now: datetime) -> str:
    """One sync round per hour: the same hour gives the same SyncRequested ids."""
    return f"sync:{now.astimezone(UTC):%Y-%m-%dT%H}"


StatusDrift = Literal["cancelled", "suspended", "restored"]


def status_drift(ours: str, details: SubscriberDetails) -> StatusDrift | None:
    """The carrier holds the line in another state than the SIM shows (changed behind our back)."""
    carrier = details.status.upper()
    if details.is_cancelled and ours != "cancelled":
        return "cancelled"
    if carrier == "SUSPENDED" and ours in ("active", "provisioning"):
        return "suspended"
    if details.is_active and ours == "suspended":
        return "restored"
    return None
