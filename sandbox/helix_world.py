"""The Helix sandbox's carrier state: subscribers, the number pool, tokens, and the counters tests
read. ``HelixWorld`` applies EXTERNAL_APIS §2's rules (ICCID/IMEI checks, number assignment a while
after activation, MDN changes, status transitions); ``sandbox.helix`` serves it over HTTP.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from events.types import luhn_ok

# subscriberState → (reasonCode, reasonCodeId) as the carrier's reason-code table lists them
REASON_CODES = {"Cancel": ("CAN", 1), "Suspend": ("CR", 22), "Unsuspend": ("CR", 35)}
# subscriberState → (statuses it applies to, resulting status, refusal otherwise)
_TRANSITIONS = {
    "Cancel": ({"ACTIVE", "SUSPENDED"}, "CANCELED", "already cancelled"),
    "Suspend": ({"ACTIVE"}, "SUSPENDED", "not active"),
    "Unsuspend": ({"SUSPENDED"}, "ACTIVE", "not suspended"),
}


class CarrierError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body))
        self.status, self.body = status, body


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Subscriber:
    subscription_id: int
    iccid: str
    imei: str
    plan_id: int
    client_id: int
    fan: str
    address: dict[str, Any]
    pending_number: str | None
    number_visible_at: float
    status: str = "ACTIVE"
    status_reason: str | None = None
    phone_number: str | None = None
    old_phone_number: str | None = None
    detail_calls: int = 0
    activated_at: str = field(default_factory=_now_iso)
    canceled_at: str | None = None
    suspended_at: str | None = None

    def as_details(self, empty_number: str | None) -> dict[str, Any]:
        return {
            "mobilitySubscriptionId": str(self.subscription_id),  # a string here, like the carrier
            "phoneNumber": self.phone_number or empty_number,
            "oldPhoneNumber": self.old_phone_number,
            "iccid": self.iccid,
            "billingImei": self.imei,
            "planId": str(self.plan_id),
            "planName": "Sandbox Unlimited",
            "status": self.status,
            "statusReason": self.status_reason,
            "activatedAt": self.activated_at,
            "canceledAt": self.canceled_at,
            "suspendedAt": self.suspended_at,
            **self.address,
            "fan": self.fan,
            "clientId": str(self.client_id),
            "networkType": "5G",
            # what simfleet does not model: an operator lookup shows it anyway
            "ratePlan": {"soc": "UNL5G", "features": ["HOTSPOT", "WIFI_CALLING"]},
        }


class HelixWorld:
    """The carrier's state. Every ICCID passing length + Luhn is known unless ``inventory`` is set."""

    def __init__(
        self,
        *,
        client_id: str = "sandbox-client",
        username: str = "sandbox@example.com",
        password: str = "sandbox-password",  # noqa: S107 (the sandbox's own fake credential)
        inventory: Iterable[str] | None = None,
        area_code: str = "646",
        first_line: int = 5550000,
        number_delay_calls: int = 0,
        number_delay_s: float = 0.0,
        empty_number: str | None = None,
        token_ttl_s: int = 86400,
        first_subscription_id: int = 38100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id, self.username, self.password = client_id, username, password
        self.inventory = set(inventory) if inventory is not None else None
        self.area_code, self._next_line = area_code, first_line
        self.number_delay_calls, self.number_delay_s = number_delay_calls, number_delay_s
        self.empty_number = empty_number  # what phoneNumber shows while unassigned: null or ""
        self.token_ttl_s, self._clock = token_ttl_s, clock
        self._next_id = first_subscription_id
        self.tokens: dict[str, float] = {}  # token → expiry on ``clock``
        self.subscribers: dict[int, Subscriber] = {}
        # ICCID → its subscriptions, oldest first: a lookup by ICCID must not walk every line
        # (a bench of 10,000 SIMs made that walk most of the carrier's CPU)
        self._by_iccid: dict[str, list[Subscriber]] = {}
        self.token_requests = 0
        self.activations: Counter[str] = Counter()  # subscriptions created, per ICCID
        self.mdn_changes: Counter[str] = Counter()  # numbers changed on request, per ICCID
        self.calls: Counter[str] = Counter()  # requests received, per operation
        self.mdn_rejections: dict[int, str] = {}

    # --- tokens -----------------------------------------------------------------------------
    def issue_token(self) -> str:
        token = "sbx." + secrets.token_urlsafe(24)
        self.tokens[token] = self._clock() + self.token_ttl_s
        return token

    def token_valid(self, token: str) -> bool:
        return self.tokens.get(token, float("-inf")) > self._clock()

    def expire_tokens(self) -> None:
        """The carrier forgets every token (as after a key rotation): the next call gets 401."""
        self.tokens = dict.fromkeys(self.tokens, float("-inf"))

    # --- subscribers ------------------------------------------------------------------------
    def next_number(self) -> str:
        self._next_line += 1
        return f"{self.area_code}{self._next_line - 1:07d}"

    def subscriber_by_iccid(self, iccid: str) -> Subscriber | None:
        found = self._by_iccid.get(iccid)
        return max(found, key=lambda s: s.subscription_id) if found else None

    def _add(self, sub: Subscriber) -> None:
        self.subscribers[sub.subscription_id] = sub
        self._by_iccid.setdefault(sub.iccid, []).append(sub)

    def force_mdn(self, iccid: str, number: str) -> None:
        """Carrier-side drift: the number changes without simfleet asking."""
        sub = self._require_iccid(iccid)
        sub.old_phone_number, sub.phone_number, sub.pending_number = sub.phone_number, number, None

    def reject_next_mdn_change(self, iccid: str, message: str) -> None:
        self.mdn_rejections[self._require_iccid(iccid).subscription_id] = message

    def _require_iccid(self, iccid: str) -> Subscriber:
        sub = self.subscriber_by_iccid(iccid)
        if sub is None:
            raise KeyError(iccid)
        return sub

    def activate(self, body: dict[str, Any]) -> Subscriber:
        service = body.get("service") or {}
        iccid, imei = str(service.get("iccid", "")), str(service.get("imei", ""))
        if not (iccid.isdigit() and 19 <= len(iccid) <= 20 and luhn_ok(iccid)):
            raise CarrierError(400, {"errorMessage": f"Invalid ICCID {iccid}"})
        if self.inventory is not None and iccid not in self.inventory:
            raise CarrierError(400, {"errorMessage": f"ICCID {iccid} not found in inventory"})
        if not (imei.isdigit() and len(imei) == 15 and luhn_ok(imei)):
            raise CarrierError(400, {"errorMessage": f"Invalid IMEI {imei}"})
        existing = self.subscriber_by_iccid(iccid)
        if existing is not None and existing.status != "CANCELED":
            raise CarrierError(
                400, {"errorMessage": f"ICCID {iccid} already has an active subscription"}
            )
        address = body.get("address") or {}
        sub = Subscriber(
            subscription_id=self._next_id,
            iccid=iccid,
            imei=imei,
            plan_id=int((body.get("plan") or {}).get("id", 0)),
            client_id=int(body.get("clientId", 0)),
            fan=str(body.get("FAN", "")),
            address={k: address.get(k) for k in ("address1", "city", "state", "zipCode")},
            pending_number=self.next_number(),
            number_visible_at=self._clock() + self.number_delay_s,
        )
        self._next_id += 1
        self._add(sub)
        self.activations[iccid] += 1
        return sub

    def restore(self, subscription_id: int, iccid: str, imei: str, number: str) -> None:
        """A line activated before this world existed (it lives in memory; simfleet's tables
        outlive it): the carrier knows it again, with its number. A known ICCID is left alone."""
        if self.subscriber_by_iccid(iccid) is not None:
            return
        self._add(
            Subscriber(
                subscription_id=subscription_id,
                iccid=iccid,
                imei=imei,
                plan_id=0,
                client_id=0,
                fan="",
                address={},
                pending_number=None,
                number_visible_at=0.0,
                phone_number=number.removeprefix("+1"),
            )
        )
        self._next_id = max(self._next_id, subscription_id + 1)
        self._next_line = max(self._next_line, int(number[-7:]) + 1)

    def details(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        wanted_id, wanted_number, wanted_iccid = (
            query.get("mobilitySubscriptionId"),
            query.get("subscriberNumber"),
            query.get("iccid"),
        )
        found = self._matching(wanted_id, wanted_number, wanted_iccid)
        for sub in found:
            # the carrier assigns the number a while after activation
            due = sub.detail_calls >= self.number_delay_calls
            if sub.pending_number and due and self._clock() >= sub.number_visible_at:
                sub.phone_number, sub.pending_number = sub.pending_number, None
            sub.detail_calls += 1
        return [s.as_details(self.empty_number) for s in found]

    def _matching(self, wanted_id: Any, wanted_number: Any, wanted_iccid: Any) -> list[Subscriber]:
        """The lines matching any of the query's keys, in the order they were created."""
        if wanted_number is not None:  # numbers change: only a walk finds them
            return [
                s
                for s in self.subscribers.values()
                if (wanted_id is not None and str(s.subscription_id) == str(wanted_id))
                or s.phone_number == str(wanted_number)
                or (wanted_iccid is not None and s.iccid == str(wanted_iccid))
            ]
        found: dict[int, Subscriber] = {}
        if wanted_id is not None and (by_id := self._by_subscription_id(wanted_id)) is not None:
            found[by_id.subscription_id] = by_id
        if wanted_iccid is not None:
            found |= {s.subscription_id: s for s in self._by_iccid.get(str(wanted_iccid), ())}
        if len(found) < 2:  # one line or none: no order to keep
            return list(found.values())
        return [s for s in self.subscribers.values() if s.subscription_id in found]

    def _by_subscription_id(self, wanted: Any) -> Subscriber | None:
        text = str(wanted)
        sub = self.subscribers.get(int(text)) if text.isdigit() else None
        return sub if sub is not None and str(sub.subscription_id) == text else None

    def change_mdn(self, subscription_id: Any) -> dict[str, Any]:
        sub = self.subscribers.get(int(subscription_id)) if str(subscription_id).isdigit() else None
        if sub is None:
            raise CarrierError(400, {"errorMessage": f"Subscription {subscription_id} not found"})
        if sub.status != "ACTIVE":
            raise CarrierError(500, {"errorMessage": "Subscriber must be active"})
        rejection = self.mdn_rejections.pop(sub.subscription_id, None)
        if rejection is None and not sub.phone_number:
            rejection = "Subscriber has no MDN assigned yet"
        if rejection is not None:
            return {
                "rejected": [{"mobilitySubscriptionId": sub.subscription_id, "message": rejection}]
            }
        old, sub.phone_number = sub.phone_number, self.next_number()
        sub.old_phone_number = old
        self.mdn_changes[sub.iccid] += 1
        return {
            "subscriberNumber": old,
            "newSubscriberNumber": sub.phone_number,
            "changeStatus": "SUCCESS",
            "mobilitySubscriptionId": sub.subscription_id,
        }

    def change_status(self, item: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        number, state = str(item.get("subscriberNumber", "")), str(item.get("subscriberState", ""))
        sub = next((s for s in self.subscribers.values() if s.phone_number == number), None)
        allowed, target, refusal = _TRANSITIONS.get(state, (set(), "", ""))
        if (
            sub is None
            or not target
            or REASON_CODES[state]
            != (
                item.get("reasonCode"),
                item.get("reasonCodeId"),
            )
        ):
            message = "Subscriber not found" if sub is None else f"Invalid reason code for {state}"
            return False, {"subscriberNumber": number, "message": message}
        if sub.status not in allowed:
            return False, {"subscriberNumber": number, "message": f"Subscriber is {refusal}"}
        sub.status = target
        stamp = "canceled_at" if target == "CANCELED" else "suspended_at"
        if target != "ACTIVE":
            setattr(sub, stamp, _now_iso())
        code, code_id = REASON_CODES[state]
        return True, {
            "subscriberNumber": number,
            "subscriberState": state,
            "reasonCode": code,
            "reasonCodeId": code_id,
            "mobilitySubscriptionId": str(sub.subscription_id),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "token_requests": self.token_requests,
            "activations": dict(self.activations),
            "mdn_changes": dict(self.mdn_changes),
            "calls": dict(self.calls),
        }


def make_iccid(serial: int, prefix: str = "890126088") -> str:
    """A valid 20-digit ICCID (length + Luhn) for tests and demos."""
    body = f"{prefix}{serial:010d}"[:19]
    return body + next(d for d in "0123456789" if luhn_ok(body + d))


def make_imei(serial: int, prefix: str = "35693803") -> str:
    body = f"{prefix}{serial:06d}"[:14]
    return body + next(d for d in "0123456789" if luhn_ok(body + d))
