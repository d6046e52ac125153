"""Helix (HX-AX wholesale API, EXTERNAL_APIS §2): activate, details, MDN change, status, cancel,
reason codes.

Cross-cutting concerns live here once: one OAuth2 token shared by every process (Postgres
``token_cache``, refreshed by exactly one caller), ``retry()`` for 429/5xx/timeouts, a rate limit
that protects the account, and a redacted ``helix.api_called`` event for every HTTP call.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, TypeVar

import asyncpg
import httpx
import structlog
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from events.envelope import new_ref
from events.helix import HelixApiCalled
from events.sim import StatusAction
from events.types import normalize_e164
from infra.clock import Clock, SystemClock
from infra.metrics import HELIX_CALLS, HELIX_LATENCY
from infra.redaction import Redactor
from infra.retry import RateLimiter, RetryPolicy, retry
from infra.settings import HelixSettings

T = TypeVar("T")
Emit = Callable[[HelixApiCalled], Awaitable[None]]
log = structlog.get_logger(__name__)

PRODUCER = "simfleet/helix"
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
PERMANENT_5XX = ("subscriber must be active",)  # the carrier answers some refusals with a 500
ALREADY_ACTIVE = "already has an active subscription"

CACHE_ROW = "helix"  # token_cache.name of the Helix token
TOKEN_LOCK_KEY = 0x4E11C5  # the advisory lock every process takes to refresh the Helix token
TOKEN_MAX_AGE = timedelta(minutes=30)  # Auth0 says 24 h; 30 min is the original's proven cadence
SELECT_CACHE_ROW = "SELECT access_token, expires_at FROM token_cache WHERE name = $1"
UPSERT_CACHE_ROW = """
INSERT INTO token_cache (name, access_token, expires_at, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (name) DO UPDATE
SET access_token = EXCLUDED.access_token, expires_at = EXCLUDED.expires_at, updated_at = now()
"""


class HelixError(Exception):
    retryable = False

    def __init__(
        self, message: str, status_code: int | None = None, carrier_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code, self.carrier_message = status_code, carrier_message

    @property
    def reason(self) -> str:
        return self.carrier_message or str(self)


class HelixRejected(HelixError):
    """The carrier refused (4xx, or a known permanent 5xx such as "Subscriber must be active")."""


class HelixUnavailable(HelixError):
    """Transient: 429, 5xx, timeout, connection. ``ambiguous``: the carrier may have acted."""

    retryable = True

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        carrier_message: str | None = None,
        *,
        retry_after: float | None = None,
        ambiguous: bool = True,
    ) -> None:
        super().__init__(message, status_code, carrier_message)
        self.retry_after, self.ambiguous = retry_after, ambiguous


class HelixOutcomeUnknown(HelixError):
    """An activation's answer was lost and its retry found the ICCID active: most likely our own
    line, but only details (which need the subscription id) could say so."""


def _id(value: Any) -> Any:
    return str(value) if isinstance(value, int) else value


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else _id(value)


Id = Annotated[str, BeforeValidator(_id)]  # ids are strings in details, numbers elsewhere
Text = Annotated[str | None, BeforeValidator(_blank_is_none)]


class CarrierModel(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )


class SubscriberDetails(CarrierModel):
    mobility_subscription_id: Id
    phone_number: Text = None  # 10 digits; null or "" until the carrier assigns one
    old_phone_number: Text = None
    iccid: Text = None
    billing_imei: Text = None
    plan_id: Text = None
    plan_name: Text = None
    status: str = ""  # ACTIVE, ACTIVATED, SUSPENDED, CANCELED, ACTIVATION_FAILED
    status_reason: Text = None
    activated_at: Text = None  # timestamps kept verbatim: the carrier's format is not documented
    canceled_at: Text = None
    suspended_at: Text = None
    address1: Text = None
    city: Text = None
    state: Text = None
    zip_code: Text = None
    fan: Text = None
    client_id: Text = None
    network_type: Text = None

    @property
    def is_active(self) -> bool:
        return self.status.upper() in ("ACTIVE", "ACTIVATED")

    @property
    def is_cancelled(self) -> bool:
        return self.status.upper() in ("CANCELED", "CANCELLED")

    @property
    def has_failed(self) -> bool:
        reason = (self.status_reason or "").lower()
        return self.status.upper() == "ACTIVATION_FAILED" or "timed out" in reason

    @property
    def number(self) -> str | None:
        """The current number in E.164, None while unassigned; ValueError if malformed."""
        return normalize_e164(self.phone_number) if self.phone_number else None


class ReasonCode(CarrierModel):
    """A row of the carrier's reason-code table (what ``set_status`` must send)."""

    reason_code: str
    reason_code_id: Id
    subscriber_state: Text = None
    description: Text = None


class MdnChangeResult(CarrierModel):
    subscriber_number: Text = None
    new_subscriber_number: str
    change_status: str
    mobility_subscription_id: Id


@dataclass(frozen=True)
class StatusChangeResult:
    subscriber_number: str
    action: StatusAction
    already: bool = False  # the carrier said it was already done ("already cancelled")


@dataclass(frozen=True)
class _Call:
    operation: str  # helix_api_logs step: activation, subscriber_details, mdn_change, …
    method: str
    url: str
    body: Any
    iccid: str | None = None
    subscription_id: str | None = None


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: datetime


def _ten_digits(number: str) -> str:
    return re.sub(r"\D", "", number)[-10:]


def _wire_id(subscription_id: str) -> int | str:
    return int(subscription_id) if subscription_id.isdigit() else subscription_id


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds: delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("retry-after", "")
    with contextlib.suppress(ValueError):
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        return (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
    return None


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:2000]


def _carrier_message(body: Any) -> str | None:
    if isinstance(body, dict):
        for key in ("errorMessage", "message", "error_description", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])
        rejected = body.get("rejected")
        if isinstance(rejected, list) and rejected and isinstance(rejected[0], dict):
            return str(rejected[0].get("message", ""))
    return body[:300] if isinstance(body, str) and body else None


def _error_for(response: httpx.Response, body: Any) -> HelixError:
    status, message = response.status_code, _carrier_message(body)
    text = f"Helix answered {status}" + (f": {message}" if message else "")
    permanent = status >= 500 and any(p in (message or "").lower() for p in PERMANENT_5XX)
    if status in (408, 429) or (status >= 500 and not permanent):
        return HelixUnavailable(
            text,
            status_code=status,
            carrier_message=message,
            retry_after=_retry_after(response),
            # 429 and 503 say the request was not processed; 408 and other 5xx may hide a done deed
            ambiguous=status not in (429, 503),
        )
    return HelixRejected(text, status, message)


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
    ) -> None:
        if not settings.token_url or not str(http.base_url):
            # unset means "use the sandbox": the composition root must have filled both in
            raise ValueError("HelixClient needs HX_TOKEN_URL and an http client with HX_API_BASE")
        self._http, self._settings, self._pool, self._emit = http, settings, pool, emit
        self._token_url = settings.token_url
        self._clock = clock or SystemClock()
        self._policy = policy or RetryPolicy(max_attempts=settings.max_retries + 1)
        self._limiter = limiter or RateLimiter(settings.rate_limit_per_s)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._subscriber_name = subscriber_name
        self._redact = Redactor([settings.grant_password.get_secret_value(), settings.client_id])
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        self._token_failure: tuple[float, HelixError] | None = None

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
        call = _Call("activation", "POST", ACTIVATE_PATH, body, iccid)
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
        body = {"mobilitySubscriptionId": _wire_id(subscription_id)}
        call = _Call(operation, "POST", DETAILS_PATH, body, iccid, subscription_id)
        reply = await self._retry(lambda: self._send(call))
        for row in reply if isinstance(reply, list) else [reply]:
            with contextlib.suppress(ValidationError):
                found = SubscriberDetails.model_validate(row)
                if found.mobility_subscription_id == str(subscription_id):
                    return found
        raise HelixRejected(f"Helix has no subscription {subscription_id}", 404)

    async def reason_codes(self) -> list[ReasonCode]:
        """The carrier's reason-code table (read-only); rows it cannot read are left out."""
        call = _Call("reason_codes", "GET", REASON_CODES_PATH, None)
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
        call = _Call("mdn_change", "PATCH", CTN_PATH, body, iccid, subscription_id)
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
            message = _carrier_message(reply)
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
        call = _Call(
            operation,
            "PATCH",
            STATUS_PATH,
            [{**item, "subscriberState": state}],
            iccid,
            subscription_id,
        )
        reply = await self._retry(lambda: self._send(call))
        if isinstance(reply, dict) and reply.get("rejected"):
            message = _carrier_message(reply) or "rejected"
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

    async def _send(self, call: _Call) -> Any:
        """One call (replayed once with a fresh token after a 401); the JSON reply or an error."""
        token = await self._access_token()
        response = await self._request(call, token)
        if response.status_code == 401:
            response = await self._request(call, await self._access_token(stale=token))
        reply = _body(response)
        if response.is_success:
            return reply
        raise _error_for(response, reply)

    async def _request(self, call: _Call, token: str | None) -> httpx.Response:
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
            error = HelixUnavailable(f"{type(err).__name__}: {err}", ambiguous=sent)
            await self._audit(call, started, None, error)
            raise error from err
        await self._audit(call, started, response, None)
        return response

    async def _audit(
        self,
        call: _Call,
        started: float,
        response: httpx.Response | None,
        error: HelixError | None,
    ) -> None:
        now = self._clock.now()
        reply = _body(response) if response is not None else None
        if call.operation == "token" and isinstance(reply, dict):
            self._redact.add(str(reply.get("access_token") or ""))
        if response is not None and not response.is_success:
            error = _error_for(response, reply)
        event = HelixApiCalled.create(
            producer=PRODUCER,
            time=now,
            correlationid=structlog.contextvars.get_contextvars().get("correlationid"),
            call_id=new_ref(),
            operation=call.operation,
            iccid=call.iccid,
            mobility_subscription_id=call.subscription_id,
            method=call.method,
            url=self._redact(str(self._http.base_url.join(call.url))),
            status_code=response.status_code if response is not None else None,
            ok=response is not None and response.is_success,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            request_body=self._redact(call.body),
            response_body=self._redact(reply),
            error=self._redact(str(error)) if error is not None else None,
            called_at=now,
        )
        HELIX_CALLS.labels(call.operation, str(event.data.ok).lower()).inc()
        HELIX_LATENCY.labels(call.operation).observe(event.data.duration_ms / 1000)
        try:
            await self._emit(event)
        except Exception as err:  # the audit trail must never change a carrier call's outcome
            log.warning("helix_audit_failed", operation=call.operation, error=type(err).__name__)

    # --- the shared token ----------------------------------------------------------------------
    async def _access_token(self, stale: str | None = None) -> str:
        """A valid token; ``stale`` is one the carrier just refused with 401."""
        if (token := self._usable(self._token, stale)) is not None:
            return token.value
        waiting_since = time.monotonic()
        async with self._token_lock:  # single flight in this process
            if (token := self._usable(self._token, stale)) is not None:
                return token.value
            failure = self._token_failure
            if failure is not None and failure[0] >= waiting_since:
                raise failure[1]  # the refresh we waited for just failed: share, don't stampede
            try:
                self._token = await self._shared_token(stale)
            except HelixError as err:
                self._token_failure = (time.monotonic(), err)
                raise
            return self._token.value

    def _usable(self, token: _Token | None, stale: str | None) -> _Token | None:
        if token is None or token.value == stale or token.expires_at <= self._clock.now():
            return None
        self._redact.add(token.value)  # a token read from token_cache is a secret of ours too
        return token

    async def _shared_token(self, stale: str | None) -> _Token:
        """Single flight across processes: advisory lock, re-read, fetch only if still needed."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(SELECT_CACHE_ROW, CACHE_ROW)
            if row and (found := self._usable(_Token(row[0], row[1]), stale)):
                return found
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", TOKEN_LOCK_KEY)
                row = await conn.fetchrow(SELECT_CACHE_ROW, CACHE_ROW)
                if row and (found := self._usable(_Token(row[0], row[1]), stale)):
                    return found
                token = await self._retry(self._fetch_token)
                await conn.execute(UPSERT_CACHE_ROW, CACHE_ROW, token.value, token.expires_at)
                return token

    async def _fetch_token(self) -> _Token:
        s = self._settings
        grant = {
            "grant_type": "password",
            "client_id": s.client_id,
            "audience": s.audience,
            "username": s.grant_username,
            "password": s.grant_password.get_secret_value(),
        }
        fetched_at = self._clock.now()
        response = await self._request(_Call("token", "POST", self._token_url, grant), None)
        reply = _body(response)
        if not response.is_success:
            raise _error_for(response, reply)
        value = reply.get("access_token") if isinstance(reply, dict) else None
        if not isinstance(value, str) or not value:
            raise HelixUnavailable("token endpoint answered without an access_token")
        self._redact.add(value)
        lifetime = min(timedelta(seconds=float(reply.get("expires_in", 86400))), TOKEN_MAX_AGE)
        # refresh a little early, so a token never expires between our check and the call
        return _Token(value, fetched_at + lifetime - min(timedelta(seconds=60), lifetime / 10))
