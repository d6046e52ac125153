import asyncio
from collections.abc import Awaitable, Callable

import pytest

from infra.retry import RateLimiter, RetryPolicy, retry


class Transient(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("transient")
        self.retry_after = retry_after


class Permanent(Exception):
    pass


class FakeTime:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(times: int, make: Callable[[], Exception] = Transient) -> Callable[[], Awaitable[str]]:
    calls = {"n": 0}

    async def op() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise make()
        return f"ok after {calls['n']}"

    return op


def is_transient(err: BaseException) -> bool:
    return isinstance(err, Transient)


def hint_of(err: BaseException) -> float | None:
    return err.retry_after if isinstance(err, Transient) else None


POLICY = RetryPolicy(max_attempts=6, base_delay_s=1.0, max_delay_s=5.0, budget_s=100.0)


async def test_backoff_doubles_up_to_the_cap_with_jitter_bounded_by_it() -> None:
    clock = FakeTime()
    caps: list[float] = []

    def upper_jitter(cap: float) -> float:
        caps.append(cap)
        return cap

    result = await retry(
        failing(5),
        policy=POLICY,
        is_retryable=is_transient,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=upper_jitter,
    )
    assert result == "ok after 6"
    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert caps == [1.0, 2.0, 4.0, 5.0, 5.0]


async def test_full_jitter_stays_within_zero_and_the_cap() -> None:
    clock = FakeTime()
    await retry(
        failing(5),
        policy=POLICY,
        is_retryable=is_transient,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    caps = [1.0, 2.0, 4.0, 5.0, 5.0]
    assert all(0.0 <= s <= cap for s, cap in zip(clock.sleeps, caps, strict=True))


async def test_retry_after_is_a_floor_and_is_capped() -> None:
    clock = FakeTime()
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.1, max_retry_after_s=10.0, budget_s=100.0)
    hints = iter([3.0, 500.0, None])
    op = failing(3, lambda: Transient(retry_after=next(hints)))
    await retry(
        op,
        policy=policy,
        is_retryable=is_transient,
        retry_after=hint_of,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda cap: cap,
    )
    assert clock.sleeps == [3.0, 10.0, 0.4]


async def test_non_retryable_error_is_raised_at_once() -> None:
    clock = FakeTime()
    with pytest.raises(Permanent):
        await retry(
            failing(3, Permanent),
            policy=POLICY,
            is_retryable=is_transient,
            sleep=clock.sleep,
            monotonic=clock.monotonic,
        )
    assert clock.sleeps == []


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock = FakeTime()
    with pytest.raises(Transient) as raised:
        await retry(
            failing(10),
            policy=RetryPolicy(max_attempts=3, base_delay_s=1.0),
            is_retryable=is_transient,
            sleep=clock.sleep,
            monotonic=clock.monotonic,
            jitter=lambda cap: cap,
        )
    assert clock.sleeps == [1.0, 2.0]
    assert "gave up after 3 attempts" in "".join(raised.value.__notes__)


async def test_stops_before_a_wait_that_would_overrun_the_budget() -> None:
    clock = FakeTime()
    policy = RetryPolicy(max_attempts=100, base_delay_s=1.0, max_delay_s=8.0, budget_s=10.0)
    with pytest.raises(Transient) as raised:
        await retry(
            failing(100),
            policy=policy,
            is_retryable=is_transient,
            sleep=clock.sleep,
            monotonic=clock.monotonic,
            jitter=lambda cap: cap,
        )
    # 1 + 2 + 4 = 7 s spent; the next wait (8 s) would end at 15 s > 10 s
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert clock.now <= policy.budget_s
    assert "budget" in "".join(raised.value.__notes__)


async def test_a_retry_after_beyond_the_budget_ends_the_retries() -> None:
    clock = FakeTime()
    with pytest.raises(Transient):
        await retry(
            failing(1, lambda: Transient(retry_after=30.0)),
            policy=RetryPolicy(budget_s=5.0),
            is_retryable=is_transient,
            retry_after=hint_of,
            sleep=clock.sleep,
            monotonic=clock.monotonic,
        )
    assert clock.sleeps == []


async def test_on_retry_sees_each_failed_attempt() -> None:
    clock = FakeTime()
    seen: list[tuple[int, float]] = []
    await retry(
        failing(2),
        policy=POLICY,
        is_retryable=is_transient,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda cap: cap,
        on_retry=lambda attempt, _err, delay: seen.append((attempt, delay)),
    )
    assert seen == [(1, 1.0), (2, 2.0)]


async def test_rate_limiter_allows_a_burst_then_paces_calls() -> None:
    clock = FakeTime()
    limiter = RateLimiter(4.0, burst=2, sleep=clock.sleep, monotonic=clock.monotonic)
    for _ in range(6):
        await limiter.acquire()
    # two from the burst, then one every 0.25 s; each waiter reserves ahead of the next
    assert clock.sleeps == pytest.approx([0.25, 0.25, 0.25, 0.25])
    assert clock.now == pytest.approx(1.0)


async def test_rate_limiter_refills_while_idle_up_to_the_burst() -> None:
    clock = FakeTime()
    limiter = RateLimiter(10.0, burst=3, sleep=clock.sleep, monotonic=clock.monotonic)
    for _ in range(3):
        await limiter.acquire()
    clock.now += 60.0  # a long idle period refills only up to the burst
    for _ in range(3):
        await limiter.acquire()
    assert clock.sleeps == []
    await limiter.acquire()
    assert clock.sleeps == pytest.approx([0.1])


async def test_concurrent_waiters_are_spread_over_time() -> None:
    limiter = RateLimiter(200.0, burst=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(limiter.acquire() for _ in range(11)))
    assert loop.time() - started >= 10 / 200.0 * 0.9


def test_policy_refuses_zero_attempts() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
