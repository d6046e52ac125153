"""The one retry helper (exponential backoff, full jitter, attempt and time budgets) and a rate
limiter, shared by every outbound client.

Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): the n-th wait is uniform in
``[0, min(max_delay, base * 2**(n-1))]``, which spreads a herd of clients that failed together.
A server's ``Retry-After`` hint is a floor for the wait (capped, so a hostile hint cannot park a
worker for an hour); a wait that would overrun the time budget ends the retries at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
Monotonic = Callable[[], float]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    budget_s: float = 120.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff_cap(self, attempt: int) -> float:
        """Upper bound of the wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))

    def wait_after(
        self, attempt: int, jitter: Callable[[float], float], hint: float | None
    ) -> float:
        """The wait after failed attempt ``attempt``: jittered backoff, at least the server's
        ``Retry-After`` hint (capped)."""
        delay = jitter(self.backoff_cap(attempt))
        if hint is None:
            return delay
        return max(delay, min(max(hint, 0.0), self.max_retry_after_s))

    def spent(self, attempt: int, elapsed: float, delay: float) -> str | None:
        """Why the retries end after attempt ``attempt`` (a note for the error); None: wait."""
        if attempt >= self.max_attempts:
            return f"gave up after {attempt} attempts in {elapsed:.2f}s"
        if elapsed + delay > self.budget_s:
            return (
                f"gave up after {attempt} attempts: waiting {delay:.2f}s more would exceed "
                f"the {self.budget_s:.2f}s budget"
            )
        return None


def full_jitter(cap: float) -> float:
    return random.uniform(0.0, cap)  # noqa: S311 (spreading load, not cryptography)


def no_hint(_err: BaseException) -> float | None:
    return None


async def retry(
    op: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    is_retryable: Callable[[BaseException], bool],
    retry_after: Callable[[BaseException], float | None] = no_hint,
    sleep: Sleep = asyncio.sleep,
    monotonic: Monotonic = time.monotonic,
    jitter: Callable[[float], float] = full_jitter,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Runs ``op`` until it succeeds, fails permanently, or a budget is spent.

    A non-retryable error is raised at once; when the attempts or the time budget run out the
    last error is raised unchanged (with a note), so callers keep catching their own types.
    """
    started = monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await op()
        except Exception as err:
            if not is_retryable(err):
                raise
            delay = policy.wait_after(attempt, jitter, retry_after(err))
            spent = policy.spent(attempt, monotonic() - started, delay)
            if spent is not None:
                err.add_note(spent)
                raise
            if on_retry is not None:
                on_retry(attempt, err, delay)
            await sleep(delay)


class RateLimiter:
    """Async token bucket: at most ``rate_per_s`` calls a second on average, bursts of ``burst``.

    One instance is shared by every call of a client. Waiters reserve their token before they
    sleep (the balance goes negative), so they are served in arrival order without holding a lock
    across the sleep.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        self._sleep = sleep
        self._monotonic = monotonic
        self._tokens = self.burst
        self._updated = monotonic()

    def _reserve(self) -> float:
        """Takes one token and returns how long to wait before using it."""
        now = self._monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate_per_s

    async def acquire(self) -> None:
        wait = self._reserve()  # no await between read and write: atomic on the event loop
        if wait > 0:
            await self._sleep(wait)
