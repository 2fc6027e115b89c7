"""Retry timing: the backoff formula, ``Retry-After`` parsing and the request-rate limiter.

Backoff (stamina-style capped exponential with "equal jitter")::

    base(n)  = min(backoff_max, backoff_initial * 2 ** (n - 1))      # n = retry number, from 1
    delay(n) = base(n) * uniform(0.5, 1.0)

so ``base(n) / 2 <= delay(n) <= base(n)``. With the defaults (``backoff_initial=1.0``,
``backoff_max=30.0``, ``max_retries=3``) the three retries wait 0.5-1 s, 1-2 s, 2-4 s.
When the answer carries ``Retry-After`` (seconds or an HTTP date), the delay is
``max(delay(n), min(retry_after, max_retry_after))``: the server's hint is honoured as a
lower bound, capped at ``max_retry_after`` (default 120 s) so a hostile or broken
header cannot park a job for hours.
"""

from __future__ import annotations

import collections
import email.utils
import math
import random
import time

import anyio

__all__ = ["RateLimiter", "backoff_delay", "parse_retry_after", "retry_delay"]


def backoff_delay(
    retry: int, *, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """``min(maximum, initial * 2 ** (retry - 1)) * uniform(0.5, 1.0)`` for ``retry >= 1``."""
    exponent = min(max(retry, 1) - 1, 62)
    base = min(maximum, initial * (2.0**exponent))
    return base * (rng or random).uniform(0.5, 1.0)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns ``None`` for a missing or unreadable header and ``0.0`` for a date in the past.
    Negative, NaN and infinite values count as unreadable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None or when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        return None
    return seconds


def retry_delay(
    retry: int,
    retry_after: float | None,
    *,
    initial: float,
    maximum: float,
    max_retry_after: float,
    rng: random.Random | None = None,
) -> float:
    """The wait before retry ``retry``: the backoff, raised to a capped ``Retry-After``."""
    delay = backoff_delay(retry, initial=initial, maximum=maximum, rng=rng)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_retry_after))
    return delay


class RateLimiter:
    """At most ``rate`` request starts in any window of ``per`` seconds (sliding window).

    Callers queue first come, first served (a fair lock); the one at the head waits until
    the oldest of the last ``rate * per`` starts is ``per`` seconds old, then records the
    actual time it goes. Recording the real release time (not a planned slot) keeps the
    rule true on the times requests are really sent, even when the event loop wakes a
    sleeper late. A caller cancelled while waiting takes no slot.
    """

    def __init__(self, rate: float, per: float = 1.0) -> None:
        if rate * per >= 1:
            self.capacity, self.per = int(rate * per), per
        else:  # fewer than one request per window: one every 1/rate seconds
            self.capacity, self.per = 1, 1.0 / rate
        # Start times of the last `capacity` requests, oldest first.
        self._starts: collections.deque[float] = collections.deque(maxlen=self.capacity)
        self._lock = anyio.Lock()

    async def acquire(self) -> None:
        """Wait for a slot."""
        starts = self._starts
        if len(starts) < self.capacity and not self._lock.locked():
            starts.append(time.monotonic())  # fast path: window not full, nobody queued
            return
        async with self._lock:
            while len(starts) == self.capacity:
                wait = starts[0] + self.per - time.monotonic()
                if wait <= 0:
                    break
                await anyio.sleep(wait)
            starts.append(time.monotonic())
