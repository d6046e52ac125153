"""One signed webhook POST to one reseller endpoint; retries and events belong to the consumer.

Transport: pyreqwest (Rust's reqwest and hyper under asyncio), not ``httpx.AsyncClient``
(STYLE §7.6's default for clients) nor aiohttp. The target is >= 2,000 deliveries/s on 2 cores
with the consumer's whole path at most twice a bare aiohttp POST's CPU.
``bench/bench_webhooks.py`` (signed POSTs to a receiver in its own process, 64 in flight):
httpx default transport ~300/s, httpx + httpx-aiohttp ~3,000/s, aiohttp ~10,000/s at ~70 µs
of CPU a POST, pyreqwest ~24,000/s at ~30 µs (its runtime thread included) — the HTTP
exchange was a third of the consumer's CPU per delivery. Besides that:
- a hard deadline per attempt (``ClientBuilder.timeout``: connect to the end of the answer)
  keeps a slow reseller from holding its slots: an endpoint that drips its answer a byte at a
  time is ended at ``timeout_s`` (httpx's per-operation timeouts held it 3 s under 1 s);
- no redirects, no proxies from the environment (a proxy would resolve the name itself), no
  cookies (they would leak across resellers).

Safety on every send (DNS rebinding, SSRF):
- the URL is re-validated (IP literals, ``localhost``, allowed ports) as yarl parses it
  (IDNA-mapped host), and the host the HTTP client reads from that URL must be the very one
  checked (a client reading ``127.0.0.%31`` as ``127.0.0.1`` is refused, not sent to);
- a name is resolved only through `url_guard.resolve_public`, and posted to through a client
  pinned to exactly those addresses (reqwest's ``resolve``): a connection can only ever be
  opened to an address the guard approved, no gap between checking and connecting. A name's
  addresses are looked up again after ``DNS_TTL_S``; its client (and keep-alive pool) is
  replaced only when they changed.

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
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError
from pyreqwest.http import Url
from pyreqwest.response import Response
from yarl import URL

from infra.clock import Clock, SystemClock
from infra.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_LATENCY
from infra.settings import WebhookSettings
from infra.url_guard import (
    UnsafeEndpoint,
    client_url,
    ip_literal,
    resolve_public,
    validate_endpoint_url,
)
from infra.webhook_signing import headers_for

DNS_TTL_S = 10
ERROR_TEXT_BYTES = 300
# read (and drop) answers up to this size so the connection goes back to the pool; a bigger
# one closes it instead of making us buffer whatever a hostile endpoint sends
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "simfleet-webhooks/1"
TARGETS_KEPT = 4096  # checked URLs remembered; forgotten all at once beyond that
CLIENTS_KEPT = 1024  # pinned names (each with its pool); all retired at once beyond that


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


@dataclass(frozen=True, slots=True)
class _Target:
    """A checked endpoint URL as the client posts to it."""

    url: str  # ASCII: the host IDNA-encoded, as yarl writes it
    host: str  # as the client reads it from ``url`` (IPv6 without brackets)
    port: int
    named: bool  # a name, resolved and pinned; else an IP literal, dialled as written


@dataclass(slots=True)
class _Pinned:
    """A client that resolves one name only to the addresses the guard approved."""

    addresses: tuple[str, ...]
    client: Client
    fresh_until: float  # time.monotonic(): looked up again after this


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
        self._targets: dict[str, _Target] = {}  # checked once per URL (a few per endpoint)
        # IP literals, and every name where private targets are allowed (the system resolver)
        self._shared: Client | None = None
        self._pinned: dict[tuple[str, int], _Pinned] = {}
        self._retired: dict[Client, asyncio.Task[None]] = {}  # closed after their deadline

    async def deliver(
        self,
        endpoint: EndpointTarget,
        message_id: str,
        body: bytes,
        *,
        timestamp: int | None = None,
    ) -> AttemptResult:
        """One attempt: sign, check the target, POST, classify. Never raises for network trouble."""
        if timestamp is None:
            timestamp = int(self._clock.now().timestamp())
        headers = headers_for(endpoint.secrets, message_id, timestamp, body)
        headers["user-agent"] = USER_AGENT
        slot = self._endpoint_slot(endpoint.endpoint_id)
        try:
            async with slot.semaphore, self._all:
                started = time.perf_counter()
                try:
                    target = self._target(endpoint.url)
                    client = self._ready_client(target) or await self._client_for(target)
                    request = client.post(target.url).headers(headers).body_bytes(body)
                    async with request.build_streamed() as response:
                        result = self._answered(response, await _answer(response), started)
                except UnsafeEndpoint as err:
                    result = _failed(Outcome.BLOCKED, started, str(err))
                except TimeoutError:  # the client's deadline (RequestTimeoutError) included
                    timeout = f"timeout after {self._settings.timeout_s}s"
                    result = _failed(Outcome.RETRYABLE, started, timeout)
                except (PyreqwestError, OSError) as err:
                    result = _failed(Outcome.RETRYABLE, started, _reason(err))
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._slots[endpoint.endpoint_id]
        _ATTEMPTS_BY_OUTCOME[result.outcome].inc()
        WEBHOOK_LATENCY.observe(result.latency_ms / 1000)
        return result

    def _target(self, url: str) -> _Target:
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
            target = self._targets[url] = _as_client_reads(client_url(checked))
        return target

    def _ready_client(self, target: _Target) -> Client | None:
        """The client for ``target`` when nothing needs looking up (the usual case, without a
        coroutine of its own)."""
        if not target.named or self._settings.allow_private:
            if self._shared is None:
                self._shared = self._builder().build()
            return self._shared
        pinned = self._pinned.get((target.host, target.port))
        if pinned is not None and time.monotonic() < pinned.fresh_until:
            return pinned.client
        return None

    async def _client_for(self, target: _Target) -> Client:
        """A pinned client for a name whose addresses are unknown or due a fresh look-up."""
        key = (target.host, target.port)
        addresses = tuple(await resolve_public(target.host, target.port, allow_private=False))
        fresh_until = time.monotonic() + DNS_TTL_S
        pinned = self._pinned.get(key)  # another delivery may have looked it up meanwhile
        if pinned is not None and pinned.addresses == addresses:
            pinned.fresh_until = fresh_until
            return pinned.client
        builder = self._builder()
        for address in addresses:
            builder = builder.resolve(target.host, address, target.port)
        if pinned is not None:
            self._retire(pinned.client)
        elif len(self._pinned) >= CLIENTS_KEPT:
            for kept in self._pinned.values():
                self._retire(kept.client)
            self._pinned.clear()
        self._pinned[key] = _Pinned(addresses, builder.build(), fresh_until)
        return self._pinned[key].client

    def _builder(self) -> ClientBuilder:
        return (
            ClientBuilder()
            .timeout(timedelta(seconds=self._settings.timeout_s))
            .follow_redirects(False)
            .no_proxy()
        )

    def _retire(self, client: Client) -> None:
        """Closed once the attempts it may be carrying are past their deadline."""

        async def close_later() -> None:
            await asyncio.sleep(self._settings.timeout_s + 1)
            del self._retired[client]
            await client.close()

        self._retired[client] = asyncio.create_task(close_later())

    def _answered(self, response: Response, answer: bytes, started: float) -> AttemptResult:
        status = response.status
        outcome = classify(status)
        text = " ".join(answer[:ERROR_TEXT_BYTES].decode("utf-8", "replace").split())
        if outcome is Outcome.DELIVERED:
            return AttemptResult(outcome, status, _elapsed_ms(started), None, None, text or None)
        error = f"HTTP {status}" + (f": {text}" if text else "")
        retry_after = response.headers.get("retry-after")
        retry_after_s = (
            None if retry_after is None else parse_retry_after(retry_after, self._clock.now())
        )
        return AttemptResult(
            outcome, status, _elapsed_ms(started), error, retry_after_s, text or None
        )

    def _endpoint_slot(self, endpoint_id: str) -> _Slot:
        """The endpoint's semaphore, counted as used until `deliver` lets go of it: it lives
        only while someone uses it (no growth per endpoint ever seen)."""
        slot = self._slots.get(endpoint_id)
        if slot is None:
            slot = self._slots[endpoint_id] = _Slot(self._settings.per_endpoint_concurrency)
        slot.users += 1
        return slot

    async def aclose(self) -> None:
        for task in self._retired.values():
            task.cancel()
        clients = [*self._retired, *(pinned.client for pinned in self._pinned.values())]
        clients += [self._shared] if self._shared is not None else []
        self._retired.clear()
        self._pinned.clear()
        self._shared = None
        for client in clients:
            await client.close()

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _as_client_reads(parsed: URL) -> _Target:
    """The checked URL as the client will read it; refused if its host reads differently there
    (a percent-encoded or legacy spelling the client turns into another address)."""
    text = str(parsed)
    try:
        read = Url(text)
    except ValueError:
        raise UnsafeEndpoint("endpoint URL is malformed") from None
    host = (read.host_str or "").removeprefix("[").removesuffix("]")
    checked = parsed.raw_host or ""
    same_name = host.rstrip(".").lower() == checked.rstrip(".").lower()
    literal = ip_literal(host)
    if not same_name and (literal is None or literal != ip_literal(checked)):
        raise UnsafeEndpoint("endpoint host reads differently to the HTTP client")
    port = read.port_or_known_default
    if port is None or port != parsed.port:
        raise UnsafeEndpoint("endpoint port reads differently to the HTTP client")
    return _Target(text, host, port, named=literal is None)


async def _answer(response: Response) -> bytes:
    """At most ``MAX_ANSWER_BYTES`` of the answer: read so the connection goes back to the pool,
    a bigger one cut off (its connection closed) rather than buffered."""
    reader = response.body_reader
    declared = response.headers.get("content-length")
    expected = int(declared) if declared is not None and declared.isdigit() else None
    answer = b""
    while len(answer) < MAX_ANSWER_BYTES:
        chunk = await reader.read(MAX_ANSWER_BYTES - len(answer))
        if chunk is None:
            break
        answer += bytes(chunk)
        if expected is not None and len(answer) >= expected:  # the usual: no read to learn it
            break
    return answer


def _reason(err: Exception) -> str:
    """What went wrong, for the delivery's record: the client's chain of causes, without the
    request's URL (a reseller may carry a token in it)."""
    parts = [getattr(err, "message", "") or str(err)]
    details = getattr(err, "details", None)
    causes = details.get("causes") if isinstance(details, dict) else None
    parts += [c["message"] for c in causes or () if "url (" not in c["message"]]
    return f"{type(err).__name__}: {': '.join(parts)}"[:ERROR_TEXT_BYTES]


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _failed(outcome: Outcome, started: float, error: str) -> AttemptResult:
    return AttemptResult(
        outcome=outcome, status_code=None, latency_ms=_elapsed_ms(started), error=error
    )
