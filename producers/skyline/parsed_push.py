"""What every Skyline push parser shares: the result (``ParsedPush``), the SMS event as every
format makes it, and the gateway a push names (its MAC, else the ``gateway_id`` of its URL)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from events.envelope import Event
from events.gateway import GatewayStatusReported
from events.sms import SmsDeliveryReported, SmsReceived
from producers.skyline.push_fields import PushRejected, sms_body_of, validation_reason

PRODUCER = "simfleet/gateway-bridge"
UNKNOWN_GATEWAY = "unknown"


@dataclass(frozen=True)
class ParsedPush:
    sms: tuple[SmsReceived, ...] = ()
    reports: tuple[SmsDeliveryReported, ...] = ()
    statuses: tuple[GatewayStatusReported, ...] = ()
    arrival_timed: frozenset[str] = frozenset()  # ids of SMS dated by arrival: no time of their own

    @property
    def events(self) -> tuple[Event, ...]:
        return (*self.sms, *self.reports, *self.statuses)


def gateway_id_from(query: Mapping[str, str]) -> str:
    """The gateway's MAC when it says it, else the ``gateway_id`` set in its push URL."""
    return normalize_mac(query.get("mac")) or query.get("gateway_id", "").strip() or UNKNOWN_GATEWAY


def normalize_mac(raw: object) -> str | None:
    """``00:30:F1:01:02:03`` and ``00-30-f1-01-02-03`` are one gateway: lower-case, dashes."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    digits = re.sub(r"[-:.]", "", raw.strip())
    if re.fullmatch(r"[0-9A-Fa-f]{12}", digits):
        return "-".join(digits[i : i + 2] for i in range(0, 12, 2)).lower()
    return raw.strip()


def sms_event(
    *, now: datetime, body: str, received_at: datetime | None, where: str = "", **fields: Any
) -> tuple[SmsReceived, bool]:
    """The event, and whether it is dated by arrival (the push said no time of its own)."""
    try:
        event = SmsReceived.create(
            producer=PRODUCER,
            time=now,
            body=sms_body_of(body, where),
            received_at=received_at or now,
            **fields,
        )
    except ValidationError as err:  # every field was checked above; this is the last guard
        raise PushRejected(validation_reason(err)) from err
    return event, received_at is None


def sms_push(
    sms: Sequence[tuple[SmsReceived, bool]], reports: tuple[SmsDeliveryReported, ...] = ()
) -> ParsedPush:
    return ParsedPush(
        sms=tuple(event for event, _ in sms),
        reports=reports,
        arrival_timed=frozenset(event.id for event, by_arrival in sms if by_arrival),
    )
