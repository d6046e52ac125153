"""One HTTP call to Helix: the path every operation of ``HelixClient`` goes through.

The shared token (``access_token``; a call answered 401 is replayed once with a fresh one), the
rate limit that protects the account and the bound on calls in flight, ``retry()`` for
429/5xx/timeouts, a redacted ``helix.api_called`` per call (``audit``) and the typed errors
(``errors``). A call goes straight to the httpx client's transport: see ``HelixCalls._target``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import httpx
import structlog

from infra.clock import Clock
from infra.helix.access_token import SharedToken, Token, token_from_grant
from infra.helix.audit import Emit, HelixAudit, HelixCall
from infra.helix.errors import HelixError, HelixUnavailable, error_for, reply_body
from infra.redaction import Redactor
from infra.retry import RateLimiter, RetryPolicy, retry
from infra.settings import HelixSettings
from infra.webhook_signing import SecretBox

T = TypeVar("T")
log = structlog.get_logger(__name__)


class HelixCalls:
    """Built by ``HelixClient`` around its ``httpx.AsyncClient`` (``base_url`` HX_API_BASE)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: HelixSettings,
        pool: asyncpg.Pool,
        emit: Emit,
        *,
        clock: Clock,
        policy: RetryPolicy | None,
        limiter: RateLimiter | None,
        box: SecretBox | None,
    ) -> None:
        if not settings.token_url or not str(http.base_url):
            # unset means "use the sandbox": the composition root must have filled both in
            raise ValueError("HelixClient needs HX_TOKEN_URL and an http client with HX_API_BASE")
        self._http, self._settings = http, settings
        self._token_url = settings.token_url
        self._clock = clock
        self._policy = policy or RetryPolicy(max_attempts=settings.max_retries + 1)
        self._limiter = limiter or RateLimiter(settings.rate_limit_per_s)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._redact = Redactor([settings.grant_password.get_secret_value(), settings.client_id])
        self._audit = HelixAudit(emit, self._clock, self._redact)
        # a call goes straight to the client's transport (see ``_request``) with what the client
        # would have added: its default headers and its timeouts
        self._default_headers = dict(http.headers.items())
        self._extensions = {"timeout": http.timeout.as_dict()}
        self._targets: dict[str, tuple[httpx.URL, httpx.AsyncBaseTransport]] = {}
        # box: seals the token in token_cache (the composition root always passes one)
        self._token = SharedToken(
            pool, self._clock, self._redact, lambda: self.retry(self._fetch_token), box
        )

    async def retry(self, op: Callable[[], Awaitable[T]]) -> T:
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

    async def send(self, call: HelixCall) -> Any:
        """One call (replayed once with a fresh token after a 401); the JSON reply or an error."""
        token = await self._token.get()
        response, reply = await self._request(call, token)
        if response.status_code == 401:
            response, reply = await self._request(call, await self._token.get(stale=token))
        if response.is_success:
            return reply
        raise error_for(response, self._redact(reply))

    async def _request(self, call: HelixCall, token: str | None) -> tuple[httpx.Response, Any]:
        """One HTTP exchange and its audit; the response (read) and its body (``reply_body``)."""
        if token is not None:  # the token endpoint is Auth0's, outside the account's quota
            await self._limiter.acquire()
        headers = self._default_headers
        if token:
            headers = {**headers, "authorization": f"Bearer {token}"}
        url, transport = self._target(call.url)
        request = httpx.Request(
            call.method, url, json=call.body, headers=headers, extensions=self._extensions
        )
        started = time.monotonic()
        try:
            async with self._slots:
                response = await transport.handle_async_request(request)
                response.request = request  # as the client does: not every transport sets it
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        except httpx.TransportError as err:
            # a refused connection never reached the carrier; a read timeout may have
            sent = not isinstance(
                err, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
            )
            error = HelixUnavailable(self._redact(f"{type(err).__name__}: {err}"), ambiguous=sent)
            await self._audit.record(call, str(url), started, None, error)
            raise error from err
        answer = response, reply_body(response)
        await self._audit.record(call, str(url), started, answer, None)
        return answer

    def _target(self, path: str) -> tuple[httpx.URL, httpx.AsyncBaseTransport]:
        """The URL a path of the API (or the absolute token URL) is sent to, and the transport
        the client would send it with (its proxies honoured). The client's own request path —
        header and cookie merging, the auth and redirect flows, none of which the carrier uses —
        cost about as much CPU as the aiohttp transport under it, on every call."""
        found = self._targets.get(path)
        if found is None:
            url = self._http.build_request("GET", path).url  # the client's base URL merged in
            found = url, self._http._transport_for_url(url)
            self._targets[path] = found
        return found

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
        response, reply = await self._request(
            HelixCall("token", "POST", self._token_url, grant), None
        )
        if not response.is_success:
            raise error_for(response, self._redact(reply))
        return token_from_grant(reply, fetched_at, self._redact)
