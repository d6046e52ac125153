"""Helix (HX-AX wholesale API, EXTERNAL_APIS §2): activate, details, MDN change, status, cancel,
reason codes.

Every operation goes through one HTTP call path: the shared token (``access_token``), a rate limit
that protects the account, ``retry()`` for 429/5xx/timeouts, and a redacted ``helix.api_called``
event per call (``audit``). Errors and answer models live in ``errors`` and ``models``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import httpx
import structlog
from pydantic import ValidationError

from events.sim import StatusAction
from infra.clock import Clock, SystemClock
from infra.helix.access_token import SharedToken, Token, token_from_grant
from infra.helix.audit import Emit, HelixAudit, HelixCall
from infra.helix.errors import (
    ALREADY_ACTIVE,
    HelixError,
    HelixOutcomeUnknown,
    HelixRejected,
    HelixUnavailable,
    carrier_message,
    error_for,
    reply_body,
)
from infra.helix.models import MdnChangeResult, ReasonCode, StatusChangeResult, SubscriberDetails
from infra.redaction import Redactor
from infra.retry import RateLimiter, RetryPolicy, retry
from infra.settings import HelixSettings
from infra.webhook_signing import SecretBox

T = TypeVar("T")
log = structlog.get_logger(__name__)

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
        if not settings.token_url or not str(http.base_url):
            # unset means "use the sandbox": the composition root must have filled both in
            raise ValueError("HelixClient needs HX_TOKEN_URL and an http client with HX_API_BASE")
        self._http, self._settings = http, settings
        self._token_url = settings.token_url
        self._clock = clock or SystemClock()
        self._policy = policy or RetryPolicy(max_attempts=settings.max_retries + 1)
        self._limiter = limiter or RateLimiter(settings.rate_limit_per_s)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._subscriber_name = subscriber_name
        self._redact = Redactor([settings.grant_password.get_secret_value(), settings.client_id])
        self._audit = HelixAudit(emit, self._clock, self._redact, http.base_url)
        # box: seals the token in token_cache (the composition root always passes one)
        self._token = SharedToken(
            pool, self._clock, self._redact, lambda: self._retry(self._fetch_token), box
        )

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
        row, _ = await self.details_answer(subscription_id, iccid=iccid, operation=operation)
        return SubscriberDetails.model_validate(row)

    async def details_answer(
        self,
        subscription_id: str,
        *,
        iccid: str | None = None,
        operation: str = "subscriber_details",
    ) -> tuple[dict[str, Any], Any]:
        """The subscription's row and the whole answer, as the carrier sent them: every field,
        also those ``SubscriberDetails`` does not model (an operator lookup shows them all)."""
        body = {"mobilitySubscriptionId": _wire_id(subscription_id)}
        call = HelixCall(operation, "POST", DETAILS_PATH, body, iccid, subscription_id)
        reply = await self._retry(lambda: self._send(call))
        for row in reply if isinstance(reply, list) else [reply]:
            with contextlib.suppress(ValidationError):
                found = SubscriberDetails.model_validate(row)
                if found.mobility_subscription_id == str(subscription_id):
                    return row, reply
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

    # --- one HTTP call: token, rate limit, audit, typed errors ---------------------------------
    async def _retry(self, op: Callable[[], Awaitable[T]]) -> T:
        def retrying(attempt: int, err: BaseException, delay: float) -> None:
            log.info(
                "helix_call_retrying", attempt=attempt, delay_s=delay, error=self._redact(str(err))
            )

        return await retry(
            op,
            policy=self._policy,
            is_retryable=lambda err: isinstance(err, HelixError) and err.retryable,
            retry_after=lambda err: err.retry_after if isinstance(err, HelixUnavailable) else None,
            on_retry=retrying,
        )

    async def _send(self, call: HelixCall) -> Any:
        """One call (replayed once with a fresh token after a 401); the JSON reply or an error."""
        token = await self._token.get()
        response = await self._request(call, token)
        if response.status_code == 401:
            response = await self._request(call, await self._token.get(stale=token))
        reply = reply_body(response)
        if response.is_success:
            return reply
        raise error_for(response, self._redact(reply))

    async def _request(self, call: HelixCall, token: str | None) -> httpx.Response:
        if token is not None:  # the token endpoint is Auth0's, outside the account's quota
            await self._limiter.acquire()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        started = time.monotonic()
        try:
            async with self._slots:
                response = await self._http.request(
                    call.method, call.url, json=call.body, headers=headers
                )
        except httpx.TransportError as err:
            # a refused connection never reached the carrier; a read timeout may have
            sent = not isinstance(
                err, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
            )
            error = HelixUnavailable(self._redact(f"{type(err).__name__}: {err}"), ambiguous=sent)
            await self._audit.record(call, started, None, error)
            raise error from err
        await self._audit.record(call, started, response, None)
        return response

    async def _fetch_token(self) -> Token:
        s = self._settings
        grant = {
            "grant_type": "password",
            "client_id": s.client_id,
            "audience": s.audience,
            "username": s.grant_username,
            "password": s.grant_password.get_secret_value(),
        }
        fetched_at = self._clock.now()
        response = await self._request(HelixCall("token", "POST", self._token_url, grant), None)
        reply = reply_body(response)
        if not response.is_success:
            raise error_for(response, self._redact(reply))
        return token_from_grant(reply, fetched_at, self._redact)
