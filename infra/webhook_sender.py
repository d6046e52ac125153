"""One signed webhook POST to one reseller endpoint; retries and events belong to the consumer.

Transport: aiohttp directly, not ``httpx.AsyncClient`` (STYLE §7.6's default for clients).
The target is >= 2,000 deliveries/s on 2 cores. ``bench/bench_webhooks.py`` (signed POSTs to a
receiver in its own process, 64 in flight; ranges over 8 runs on a 2-core machine that other
work shared at times): httpx default transport 270-370/s, httpx + httpx-aiohttp
2,650-5,050/s, bare aiohttp 5,700-15,400/s, this class end to end 4,400-13,400/s; only
aiohttp keeps a margin once Kafka and the consumer share the cores. Besides that:
- httpx timeouts are per operation, with no overall deadline: an endpoint that drips its
  answer a byte at a time held an attempt 3 s under ``timeout=1`` with either httpx transport,
  while aiohttp's ``ClientTimeout(total=...)`` ended it at 1.0 s. A hard deadline is what
  keeps a slow reseller from holding its slots;
- the SSRF guard needs a resolver on the connector (below). httpx-aiohttp could take our own
  ``ClientSession``, but httpx would then only re-map aiohttp's errors, and wrongly (a
  server disconnect or a connection reset becomes ``ConnectTimeout``), on a one-method client.

Safety on every send (DNS rebinding, SSRF):
- the URL is re-validated (IP literals, ``localhost``, allowed ports) as the client parses it
  (IDNA-mapped host), and that parsed URL is what is posted to; the connector resolves names
  only through `url_guard.resolve_public`, so a connection can only ever be opened to an
  address the guard approved — no gap between checking and connecting. The connector
  caches answers for ``DNS_TTL_S`` (cheap), and pooled keep-alive connections skip it;
- redirects are not followed, proxies from the environment are ignored (a proxy would
  resolve the name itself) and cookies are never kept (they would leak across resellers).

Concurrency: a delivery takes its endpoint's slot (``per_endpoint_concurrency``) *before* a
global one (``concurrency``), so deliveries queued behind a hanging endpoint wait without
holding global slots: one slow reseller can hold at most its own share.

Outcomes, and which the consumer retries (`AttemptResult.should_retry`):
- ``delivered``: 2xx.
- ``retryable``: 408, 429, 5xx, timeouts, connection and DNS errors.
- ``gone``: 410 — the spec says to disable the endpoint and stop sending; final.
- ``rejected``: any other status (3xx, 4xx). Retried on the normal schedule, unlike the
  original system, which stopped at any 4xx. The Standard Webhooks spec ("Delivery success
  and failure") counts every non-2xx as a failed attempt and singles out only 410 as "stop";
  and the usual 4xx causes are fixed by the reseller within the retry window (401 while they
  roll out a rotated secret, 404/403 during a deploy or from a WAF). A lost SMS code costs
  more than a few extra POSTs, which the retry budget bounds. The outcome stays distinct so
  events and the dashboard can tell "receiver refuses" from "receiver down".
- ``blocked``: the SSRF guard refused the target; no byte was sent; final.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from infra.clock import Clock, SystemClock
from infra.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_LATENCY
from infra.settings import WebhookSettings
from infra.url_guard import UnsafeEndpoint, client_url, resolve_public, validate_endpoint_url
from infra.webhook_signing import headers_for

DNS_TTL_S = 10
ERROR_TEXT_BYTES = 300
# read (and drop) answers up to this size so the connection goes back to the pool; a bigger
# one closes it instead of making us buffer whatever a hostile endpoint sends
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "simfleet-webhooks/1"
TARGETS_KEPT = 4096  # checked URLs remembered; forgotten all at once beyond that


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    REJECTED = "rejected"
    GONE = "gone"
    BLOCKED = "blocked"


# the counter's children looked up once, not per POST
_ATTEMPTS_BY_OUTCOME = {outcome: WEBHOOK_ATTEMPTS.labels(outcome.value) for outcome in Outcome}


@dataclass(frozen=True)
class EndpointTarget:
    endpoint_id: str
    url: str
    # plain signing secrets, newest first (two during rotation); never in a repr
    secrets: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    status_code: int | None
    latency_ms: float
    error: str | None = None
    # the receiver's Retry-After (429/503); the spec asks senders to honour it
    retry_after_s: float | None = None
    # the start of the answer's body (ERROR_TEXT_BYTES), for the reseller to see what it said
    answer: str | None = None

    @property
    def should_retry(self) -> bool:
        return self.outcome in (Outcome.RETRYABLE, Outcome.REJECTED)


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status == 410:
        return Outcome.GONE
    if status in (408, 429) or status >= 500:
        return Outcome.RETRYABLE
    return Outcome.REJECTED


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


class PublicOnlyResolver(AbstractResolver):
    """The connector's resolver: only addresses `resolve_public` approved are ever dialled."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await resolve_public(host, port, allow_private=False)
        if family in (socket.AF_INET, socket.AF_INET6):
            addresses = [a for a in addresses if (":" in a) == (family == socket.AF_INET6)]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=socket.IPPROTO_TCP,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class _Slot:
    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0


class WebhookSender:
    """Created once (composition root) and closed with `aclose`; connections are pooled."""

    def __init__(self, settings: WebhookSettings, *, clock: Clock | None = None) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        self._all = asyncio.Semaphore(settings.concurrency)
        self._slots: dict[str, _Slot] = {}
        self._session: aiohttp.ClientSession | None = None
        self._targets: dict[str, URL] = {}  # checked once per URL (a few per endpoint)

    def _client(self) -> aiohttp.ClientSession:
        # built lazily: aiohttp binds a connector to the running loop
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._settings.concurrency,
                ttl_dns_cache=DNS_TTL_S,
                resolver=None if self._settings.allow_private else PublicOnlyResolver(),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s),
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def deliver(
        self,
        endpoint: EndpointTarget,
        message_id: str,
        body: bytes,
        *,
        timestamp: int | None = None,
    ) -> AttemptResult:
        """One attempt: sign, check the target, POST, classify. Never raises for network trouble.

        One coroutine from the slots to the answer: every await inside aiohttp resumes each
        frame above it, and this runs once per delivery."""
        if timestamp is None:
            timestamp = int(self._clock.now().timestamp())
        headers = headers_for(endpoint.secrets, message_id, timestamp, body)
        # per request, not the session's default: merging defaults in costs more than this
        headers["user-agent"] = USER_AGENT
        slot = self._endpoint_slot(endpoint.endpoint_id)
        try:
            async with slot.semaphore, self._all:
                started = time.perf_counter()
                try:
                    async with self._client().post(
                        self._target(endpoint.url), data=body, headers=headers,
                        allow_redirects=False,
                    ) as response:  # fmt: skip
                        length = response.content_length
                        if length is not None and length <= MAX_ANSWER_BYTES:  # the usual
                            answer = await response.read()
                        else:
                            answer = await _read_capped(response)
                        result = self._answered(response, answer, started)
                except UnsafeEndpoint as err:
                    result = _failed(Outcome.BLOCKED, started, str(err))
                except TimeoutError:
                    timeout = f"timeout after {self._settings.timeout_s}s"
                    result = _failed(Outcome.RETRYABLE, started, timeout)
                except (aiohttp.ClientError, OSError) as err:
                    error = f"{type(err).__name__}: {err}"[:ERROR_TEXT_BYTES]
                    result = _failed(Outcome.RETRYABLE, started, error)
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._slots[endpoint.endpoint_id]
        _ATTEMPTS_BY_OUTCOME[result.outcome].inc()
        WEBHOOK_LATENCY.observe(result.latency_ms / 1000)
        return result

    def _target(self, url: str) -> URL:
        """The URL to post to: exactly what was checked (an unchecked re-parse could differ)."""
        target = self._targets.get(url)
        if target is None:
            settings = self._settings
            checked = validate_endpoint_url(
                url, allow_http=settings.allow_http, allow_private=settings.allow_private,
                allowed_ports=settings.allowed_ports,
            )  # fmt: skip
            if len(self._targets) >= TARGETS_KEPT:
                self._targets.clear()
            target = self._targets[url] = client_url(checked)
        return target

    def _answered(
        self, response: aiohttp.ClientResponse, answer: bytes, started: float
    ) -> AttemptResult:
        status = response.status
        outcome = classify(status)
        text = " ".join(answer[:ERROR_TEXT_BYTES].decode("utf-8", "replace").split())
        if outcome is Outcome.DELIVERED:
            return AttemptResult(outcome, status, _elapsed_ms(started), None, None, text or None)
        error = f"HTTP {status}" + (f": {text}" if text else "")
        retry_after_s = _retry_after(response, self._clock)
        return AttemptResult(
            outcome, status, _elapsed_ms(started), error, retry_after_s, text or None
        )

    def _endpoint_slot(self, endpoint_id: str) -> _Slot:
        """The endpoint's semaphore, counted as used until `_attempt` lets go of it: it lives
        only while someone uses it (no growth per endpoint ever seen)."""
        slot = self._slots.get(endpoint_id)
        if slot is None:
            slot = self._slots[endpoint_id] = _Slot(self._settings.per_endpoint_concurrency)
        slot.users += 1
        return slot

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """At most ``MAX_ANSWER_BYTES`` of an answer of unknown or greater length."""
    answer = bytearray()
    while len(answer) < MAX_ANSWER_BYTES:
        chunk = await response.content.read(MAX_ANSWER_BYTES - len(answer))
        if not chunk:
            break
        answer += chunk
        if response.content.at_eof():  # the usual short answer: no further read to learn it
            break
    return bytes(answer)


def _retry_after(response: aiohttp.ClientResponse, clock: Clock) -> float | None:
    value = response.headers.get("retry-after")
    return None if value is None else parse_retry_after(value, clock.now())


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _failed(outcome: Outcome, started: float, error: str) -> AttemptResult:
    return AttemptResult(
        outcome=outcome, status_code=None, latency_ms=_elapsed_ms(started), error=error
    )
