"""Helix (HX-AX wholesale API, EXTERNAL_APIS §2): activate, details, MDN change, status, cancel,
reason codes.

Every operation goes through one HTTP call path (``calls``): the shared token (``access_token``),
a rate limit that protects the account, ``retry()`` for 429/5xx/timeouts, and a redacted
``helix.api_called`` event per call (``audit``). Errors and answer models live in ``errors`` and
``models``.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx
from pydantic import ValidationError

from events.sim import StatusAction
from infra.clock import Clock, SystemClock
from infra.helix.audit import Emit, HelixCall
from infra.helix.calls import HelixCalls
from infra.helix.errors import (
    ALREADY_ACTIVE,
    HelixOutcomeUnknown,
    HelixRejected,
    HelixUnavailable,
    carrier_message,
)
from infra.helix.models import MdnChangeResult, ReasonCode, StatusChangeResult, SubscriberDetails
from infra.retry import RateLimiter, RetryPolicy
from infra.settings import HelixSettings
from infra.webhook_signing import SecretBox

ACTIVATE_PATH = "/api/mobility-activation/activate"
DETAILS_PATH = "/api/mobility-subscriber/details"
CTN_PATH = "/api/mobility-subscriber/ctn"
STATUS_PATH = "/api/mobility-subscriber/status"
REASON_CODES_PATH = "/api/mobility-subscriber/reason-codes"
# action → (reasonCode, reasonCodeId, subscriberState), from the carrier's reason-code table
REASONS: dict[StatusAction, tuple[str, int, str]] = {
    "cancel": ("CAN", 1, "Cancel"),
    "suspend": ("CR", 22, "Suspend"),
    "restore": ("CR", 35, "Unsuspend"),
}


def _ten_digits(number: str) -> str:
    return re.sub(r"\D", "", number)[-10:]


def _wire_id(subscription_id: str) -> int | str:
    return int(subscription_id) if subscription_id.isdigit() else subscription_id


class HelixClient:
    """One per process, built by the composition root around an ``httpx.AsyncClient`` whose
    ``base_url`` is HX_API_BASE (the token URL is absolute) and the shared asyncpg pool."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: HelixSettings,
        pool: asyncpg.Pool,
        emit: Emit,
        *,
        clock: Clock | None = None,
        policy: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        subscriber_name: tuple[str, str] = ("Simfleet", "Line"),
        box: SecretBox | None = None,
    ) -> None:
        self._settings = settings
        self._subscriber_name = subscriber_name
        self._calls = HelixCalls(
            http,
            settings,
            pool,
            emit,
            clock=clock or SystemClock(),
            policy=policy,
            limiter=limiter,
            box=box,
        )
        # bound once: the operations call these on every carrier call
        self._retry, self._send = self._calls.retry, self._calls.send

    # --- operations ---------------------------------------------------------------------------
    async def activate(self, iccid: str, imei: str) -> str:
        """Activates a line; returns its mobilitySubscriptionId. The number comes later."""
        s, (first, last) = self._settings, self._subscriber_name
        body = {
            "clientId": s.activation_client_id,
            "plan": {"id": s.plan_id},
            "BAN": s.ban,
            "FAN": s.fan,
            "activationType": "new_activation",
            "subscriber": {"firstName": first, "lastName": last},
            "address": {"address1": s.address1, "city": s.city, "state": s.state, "zipCode": s.zip},
            "service": {"imei": imei, "iccid": iccid},
        }
        call = HelixCall("activation", "POST", ACTIVATE_PATH, body, iccid)
        lost = False

        async def attempt() -> str:
            nonlocal lost
            try:
                reply = await self._send(call)
            except HelixUnavailable as err:
                lost = lost or err.ambiguous
                raise
            except HelixRejected as err:
                if lost and ALREADY_ACTIVE in err.reason.lower():
                    raise HelixOutcomeUnknown(
                        f"ICCID {iccid}: an activation got no answer and its retry found the ICCID "
                        "active; look the line up before activating again",
                        err.status_code,
                        err.carrier_message,
                    ) from err
                raise
            sub_id = reply.get("mobilitySubscriptionId") if isinstance(reply, dict) else None
            if sub_id in (None, ""):
                raise HelixUnavailable("activation answered without a mobilitySubscriptionId")
            return str(sub_id)

        return await self._retry(attempt)

    async def details(
        self,
        subscription_id: str,
        *,
        iccid: str | None = None,
        operation: str = "subscriber_details",
    ) -> SubscriberDetails:
        found, _, _ = await self._subscription(subscription_id, iccid, operation)
        return found

    async def details_answer(
        self,
        subscription_id: str,
        *,
        iccid: str | None = None,
        operation: str = "subscriber_details",
    ) -> tuple[dict[str, Any], Any]:
        """The subscription's row and the whole answer, as the carrier sent them: every field,
        also those ``SubscriberDetails`` does not model (an operator lookup shows them all)."""
        _, row, reply = await self._subscription(subscription_id, iccid, operation)
        return row, reply

    async def _subscription(
        self, subscription_id: str, iccid: str | None, operation: str
    ) -> tuple[SubscriberDetails, dict[str, Any], Any]:
        body = {"mobilitySubscriptionId": _wire_id(subscription_id)}
        call = HelixCall(operation, "POST", DETAILS_PATH, body, iccid, subscription_id)
        reply = await self._retry(lambda: self._send(call))
        for row in reply if isinstance(reply, list) else [reply]:
            with contextlib.suppress(ValidationError):
                found = SubscriberDetails.model_validate(row)
                if found.mobility_subscription_id == str(subscription_id):
                    return found, row, reply
        raise HelixRejected(f"Helix has no subscription {subscription_id}", 404)

    async def find_line(
        self,
        iccid: str,
        *,
        subscription_id: str | None = None,
        numbers: Sequence[str] = (),
        operation: str = "find_line",
    ) -> SubscriberDetails | None:
        """The carrier's line for ``iccid``, not cancelled; None when it cannot be found.

        For an activation answered "already active": by the subscription id we know, else by the
        ICCID in the details' bulk form, else by a number known for the SIM (its last number, the
        number its gateway port reports). Only rows naming this ICCID count.
        """
        queries: list[dict[str, Any]] = []
        if subscription_id:
            queries.append({"mobilitySubscriptionId": _wire_id(subscription_id)})
        queries.append({"iccid": iccid})
        queries += [{"subscriberNumber": _ten_digits(n)} for n in dict.fromkeys(numbers) if n]
        for query in queries:
            call = HelixCall(operation, "POST", DETAILS_PATH, [query], iccid, subscription_id)
            try:
                reply = await self._retry(functools.partial(self._send, call))
            except HelixRejected:
                continue  # a query form the carrier does not take: try the next
            for row in reply if isinstance(reply, list) else [reply]:
                with contextlib.suppress(ValidationError):
                    found = SubscriberDetails.model_validate(row)
                    if found.iccid == iccid and not found.is_cancelled:
                        return found
        return None

    async def reason_codes(self) -> list[ReasonCode]:
        """The carrier's reason-code table (read-only); rows it cannot read are left out."""
        call = HelixCall("reason_codes", "GET", REASON_CODES_PATH, None)
        reply = await self._retry(lambda: self._send(call))
        if not isinstance(reply, list):
            raise HelixRejected("reason codes answered without a list", 200)
        found = []
        for row in reply:
            with contextlib.suppress(ValidationError):
                found.append(ReasonCode.model_validate(row))
        return found

    async def change_mdn(
        self, subscription_id: str, *, iccid: str | None = None, current_number: str | None = None
    ) -> MdnChangeResult:
        """Gives the line a new number. With ``current_number``, an attempt whose answer was lost
        is checked against the details before retrying, so the number never changes twice."""
        body = {"mobilitySubscriptionId": _wire_id(subscription_id)}
        call = HelixCall("mdn_change", "PATCH", CTN_PATH, body, iccid, subscription_id)
        old = _ten_digits(current_number) if current_number else None
        lost = False

        async def attempt() -> MdnChangeResult:
            nonlocal lost
            if lost and old:
                now = await self.details(subscription_id, iccid=iccid)
                if now.phone_number and now.phone_number != old:
                    return MdnChangeResult(
                        subscriber_number=old,
                        new_subscriber_number=now.phone_number,
                        change_status="SUCCESS",
                        mobility_subscription_id=subscription_id,
                    )
            try:
                reply = await self._send(call)
            except HelixUnavailable as err:
                lost = lost or err.ambiguous
                raise
            message = carrier_message(reply)
            if not isinstance(reply, dict) or reply.get("rejected"):
                raise HelixRejected(f"MDN change rejected: {message}", 200, message)
            result = MdnChangeResult.model_validate(reply)
            if result.change_status.upper() != "SUCCESS":
                raise HelixRejected(f"MDN change {result.change_status}", 200, result.change_status)
            return result

        return await self._retry(attempt)

    async def set_status(
        self,
        number: str,
        action: StatusAction,
        *,
        iccid: str | None = None,
        subscription_id: str | None = None,
        operation: str = "status_change",
    ) -> StatusChangeResult:
        code, code_id, state = REASONS[action]
        mdn = _ten_digits(number)
        item = {"subscriberNumber": mdn, "reasonCode": code, "reasonCodeId": code_id}
        call = HelixCall(
            operation,
            "PATCH",
            STATUS_PATH,
            [{**item, "subscriberState": state}],
            iccid,
            subscription_id,
        )
        reply = await self._retry(lambda: self._send(call))
        if isinstance(reply, dict) and reply.get("rejected"):
            message = carrier_message(reply) or "rejected"
            if action == "cancel" and "already cancel" in message.lower():
                return StatusChangeResult(mdn, action, already=True)
            raise HelixRejected(f"{state} rejected for {mdn}: {message}", 200, message)
        return StatusChangeResult(mdn, action)

    async def cancel(self, subscription_id: str, *, iccid: str | None = None) -> StatusChangeResult:
        """Cancel needs the current number, so it reads the details first (§2.5)."""
        found = await self.details(subscription_id, iccid=iccid, operation="cancel_get_details")
        if found.is_cancelled:
            return StatusChangeResult(found.phone_number or "", "cancel", already=True)
        if not found.phone_number:
            raise HelixUnavailable("the line has no number yet; cancel needs it", ambiguous=False)
        return await self.set_status(
            found.phone_number,
            "cancel",
            iccid=iccid or found.iccid,
            subscription_id=subscription_id,
            operation="cancel_subscription",
        )
