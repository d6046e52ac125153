"""Pure decisions of the webhook flow: who gets which event, the exact bodies, the schedule.

Bodies follow EXTERNAL_APIS §3 to the letter, including the ingest worker's duplicate fields
(``sim_id/iccid/number/message/port`` beside ``to/from/body/received_at``) and the camelCase
``mobilitySubscriptionId`` of ``number.*``: existing reseller integrations parse them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, TypeGuard

import orjson

from events.envelope import Event, canonical_id
from events.sim import (
    MdnChanged,
    NumberAssigned,
    NumberOnline,
    NumberVerificationFailed,
    SimCancelled,
    SimResellerAssigned,
)
from events.sms import SmsReceived
from infra.settings import WebhookSettings
from infra.webhook_sender import Outcome
from policies.webhook_format import iso

WEBHOOK_EVENT_TYPES: tuple[str, ...] = (
    SmsReceived.event_type(),
    NumberOnline.event_type(),
    NumberVerificationFailed.event_type(),
    SimCancelled.event_type(),
)
NUMBER_OFFLINE = "number.offline"
# events that may take a number away from a reseller (each also read for ``number.offline``)
OFFLINE_CAUSE_TYPES: tuple[str, ...] = (
    MdnChanged.event_type(),
    NumberAssigned.event_type(),
    SimCancelled.event_type(),
    SimResellerAssigned.event_type(),
)
SourceEvent = SmsReceived | NumberOnline | NumberVerificationFailed | SimCancelled
OfflineReason = Literal["rotation", "carrier_change", "cancellation", "reassignment"]


def is_webhook_source(event: Event) -> TypeGuard[SourceEvent]:
    return isinstance(event, SmsReceived | NumberOnline | NumberVerificationFailed | SimCancelled)


@dataclass(frozen=True)
class NumberLeft:
    """A number taken away from a reseller, read off the event that took it: a rotation or a
    number the carrier changed behind our back (found by number sync; the replacement in
    ``replaced_by``), a cancellation, or the SIM assigned to another reseller.
    Told as a ``number.offline`` webhook; the new number's ``number.online`` only follows its
    verification, so the reseller hears of the old number's end first."""

    cause: Event
    iccid: str
    number: str
    replaced_by: str | None
    reason: OfflineReason
    reseller_id: str | None  # whom it left; None: the SIM's reseller (it keeps the SIM)

    @property
    def message_id(self) -> str:
        """One per cause: a redelivered cause finds its claim and sends nothing again."""
        return canonical_id(NUMBER_OFFLINE, {"cause": self.cause.id})


def number_left(event: Event) -> NumberLeft | None:
    match event:
        case MdnChanged(data=d) if d.old_number and d.old_number != d.new_number:
            return NumberLeft(event, d.iccid, d.old_number, d.new_number, "rotation", None)
        case NumberAssigned(data=d) if (
            d.source == "sync" and d.previous_number and d.previous_number != d.number
        ):  # a rotation's number.assigned is told by its mdn.changed
            return NumberLeft(event, d.iccid, d.previous_number, d.number, "carrier_change", None)
        case SimCancelled(data=d) if d.number:
            return NumberLeft(event, d.iccid, d.number, None, "cancellation", None)
        case SimResellerAssigned(data=d) if (
            d.number and d.previous_reseller_id and d.previous_reseller_id != d.reseller_id
        ):
            left = NumberLeft(
                event, d.iccid, d.number, None, "reassignment", d.previous_reseller_id
            )
            return left
    return None


def subscribed(event_type: str, endpoint_types: Sequence[str]) -> bool:
    """An endpoint with no types listed receives every webhook type."""
    return not endpoint_types or event_type in endpoint_types


@dataclass(frozen=True)
class SimFacts:
    """What the read tables know about the SIM an event concerns (all optional: best effort)."""

    iccid: str | None = None
    sim_id: int | None = None
    number: str | None = None
    mobility_subscription_id: str | None = None


def _subscription_id(value: str | None) -> int | str | None:
    # the original sent Helix's numeric id as a JSON number
    return int(value) if value and value.isdigit() else value


def webhook_data(event: SourceEvent, sim: SimFacts) -> dict[str, Any]:
    match event:
        case SmsReceived(data=d):
            number = d.to or sim.number
            return {
                "to": number,
                "from": d.sender,
                "body": d.body,
                "received_at": iso(d.received_at),
                "sim_id": sim.sim_id,
                "iccid": d.iccid or sim.iccid,
                "number": number,
                "message": d.body,
                "port": d.port,
            }
        case NumberOnline(data=d) | NumberVerificationFailed(data=d):
            online = isinstance(event, NumberOnline)
            data: dict[str, Any] = {
                "sim_id": sim.sim_id,
                "iccid": d.iccid,
                "number": d.number,
                "verified": online,
                "online": online,
                "online_until": iso(d.online_until),
                "mobilitySubscriptionId": _subscription_id(
                    d.mobility_subscription_id or sim.mobility_subscription_id
                ),
            }
            if not online:
                data["reason"] = d.reason
            return data
        case SimCancelled(data=d):
            return {
                "sim_id": sim.sim_id,
                "iccid": d.iccid,
                "mobility_subscription_id": d.mobility_subscription_id
                or sim.mobility_subscription_id,
            }


def webhook_body(event: SourceEvent, sim: SimFacts) -> str:
    """The exact JSON sent (and stored for retries): ``message_id`` is the event id."""
    envelope = {
        "event_type": event.type,
        "message_id": event.id,
        "created_at": iso(event.time),
        "data": webhook_data(event, sim),
    }
    return body_json(envelope)


def offline_body(left: NumberLeft, sim: SimFacts) -> str:
    """``number.offline``: the number no longer reaches the reseller's SIM (``online: false``)."""
    envelope = {
        "event_type": NUMBER_OFFLINE,
        "message_id": left.message_id,
        "created_at": iso(left.cause.time),
        "data": {
            "sim_id": sim.sim_id,
            "iccid": left.iccid,
            "number": left.number,
            "online": False,
            "reason": left.reason,
            "replaced_by": left.replaced_by,
            "offline_since": iso(left.cause.time),
            "mobilitySubscriptionId": _subscription_id(sim.mobility_subscription_id),
        },
    }
    return body_json(envelope)


def body_json(envelope: dict[str, Any]) -> str:
    """Compact JSON, non-ASCII as itself: ``json.dumps(separators=(",", ":"),
    ensure_ascii=False)``, byte for byte, made by orjson (a tenth of the CPU) for the bodies'
    strings, integers, booleans and nulls; by ``json`` for what orjson refuses (an integer
    beyond 64 bits, a lone surrogate)."""
    try:
        return orjson.dumps(envelope).decode()
    except (orjson.JSONEncodeError, UnicodeDecodeError):
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


# --- the schedule ---------------------------------------------------------------------------


class Action(StrEnum):
    DONE = "done"  # delivered
    RETRY_SOON = "retry_soon"  # wait in process (the original's 1, 2, 4, 8 s)
    RETRY_LATER = "retry_later"  # hand over to webhook.retry
    GIVE_UP = "give_up"  # final failure
    DISABLE = "disable"  # 410: final, and the endpoint stops receiving


@dataclass(frozen=True)
class Step:
    action: Action
    at: datetime | None = None  # when the next attempt is due

    @property
    def final(self) -> bool:
        return self.action in (Action.DONE, Action.GIVE_UP, Action.DISABLE)


@dataclass(frozen=True)
class Schedule:
    fast_delays_s: tuple[float, ...]
    retry_delays_s: tuple[float, ...]
    max_age_s: float
    jitter: float

    @classmethod
    def from_settings(cls, settings: WebhookSettings) -> Schedule:
        return cls(
            settings.fast_delays_s, settings.retry_delays_s, settings.max_age_s, settings.jitter
        )


def jittered(delay_s: float, fraction: float, rand: Callable[[], float] = random.random) -> float:
    """± ``fraction`` spread, so endpoints recovering together are not hit all at once."""
    return max(0.0, delay_s * (1 + fraction * (2 * rand() - 1)))


def after_attempt(
    outcome: Outcome,
    tries: int,
    *,
    started_at: datetime,
    now: datetime,
    schedule: Schedule,
    retry_after_s: float | None = None,
    rand: Callable[[], float] = random.random,
) -> Step:
    """What follows attempt number ``tries`` (1-based, within this sequence) of a delivery."""
    if outcome is Outcome.DELIVERED:
        return Step(Action.DONE)
    if outcome is Outcome.GONE:
        return Step(Action.DISABLE)
    if outcome is Outcome.BLOCKED:
        return Step(Action.GIVE_UP)
    fast = schedule.fast_delays_s
    if tries <= len(fast):
        delay, action = fast[tries - 1], Action.RETRY_SOON
        if retry_after_s is not None and retry_after_s > delay:
            # a receiver asking for a longer pause gets it from the retry topic, not a sleeper
            delay, action = retry_after_s, Action.RETRY_LATER
    elif not schedule.retry_delays_s:
        return Step(Action.GIVE_UP)
    else:
        index = min(tries - len(fast) - 1, len(schedule.retry_delays_s) - 1)
        delay = jittered(schedule.retry_delays_s[index], schedule.jitter, rand)
        delay, action = max(delay, retry_after_s or 0.0), Action.RETRY_LATER
    due = now + timedelta(seconds=delay)
    if (due - started_at).total_seconds() > schedule.max_age_s:
        return Step(Action.GIVE_UP)
    return Step(action, due)
