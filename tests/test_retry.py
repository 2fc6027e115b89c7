"""Backoff bounds, Retry-After parsing and the rate limiter."""

from __future__ import annotations

import email.utils
import random
import time

import anyio
import pytest

from flinks_async._retry import RateLimiter, backoff_delay, parse_retry_after, retry_delay


@pytest.mark.parametrize("retry", [1, 2, 3, 10, 100, 10_000])
def test_backoff_stays_within_documented_bounds(retry: int) -> None:
    rng = random.Random(retry)
    base = min(30.0, 1.0 * 2 ** min(retry - 1, 62))
    for _ in range(200):
        delay = backoff_delay(retry, initial=1.0, maximum=30.0, rng=rng)
        assert base / 2 <= delay <= base


def test_retry_after_raises_the_delay_but_is_capped() -> None:
    assert retry_delay(1, 5.0, initial=0.1, maximum=1.0, max_retry_after=120) == 5.0
    assert retry_delay(1, 1e9, initial=0.1, maximum=1.0, max_retry_after=120) == 120
    assert retry_delay(1, None, initial=0.1, maximum=1.0, max_retry_after=120) <= 0.1


def test_parse_retry_after() -> None:
    now = time.time()
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    future = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (parse_retry_after(future, now=now) or 0) <= 31
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    for garbage in (None, "", "soon", "-5", "nan", "inf", "Mon, 99 Foo 2020"):
        assert parse_retry_after(garbage) is None


@pytest.mark.anyio
async def test_rate_limiter_keeps_any_one_second_window_under_the_rate() -> None:
    limiter = RateLimiter(50, per=0.2)  # 10 per 0.2 s window
    starts: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        starts.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        for _ in range(35):
            tg.start_soon(one)
    starts.sort()
    for i in range(len(starts) - 10):
        assert starts[i + 10] - starts[i] >= 0.2 - 1e-3
    assert starts[-1] - starts[0] < 1.0  # and it does not over-throttle


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
