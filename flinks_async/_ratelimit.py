"""The request-rate limiter: at most N requests *arrive* in any window of W seconds.

``FlinksClient(rate_limit=N, rate_limit_window=W)`` (W defaults to 1.0). Flinks counts a
request when it arrives, and the client cannot know when that is: only that it lies
between the moment the request starts to be sent and the moment its answer starts to come
back (or the connection fails). So a request holds its slot over that whole interval and
for ``W`` seconds after it:

    a request may start only while fewer than N requests are *occupying*, where a request
    occupies from its start until W seconds after its answer (headers) began to arrive
    (or it failed, or was cancelled).

Why that holds on the server's clock: take any N+1 requests and suppose all arrive within
some window ``[t, t + W)``. Let k be the one that started last. Every other one, i,
started no later than k and arrived at ``a_i >= t > a_k - W >= s_k - W``, so its answer
began at ``r_i >= a_i > s_k - W``: when k started, all N others were still occupying, and
k could not have started. Latency, a busy event loop, a slow connection pool and retries
change nothing in that argument, which is why it is the rule and not a sliding window of
start times (that one let 18 requests reach the server in one second at ``rate_limit=10``).

Cost: a slot is busy for ``latency + W`` instead of ``W``, so the throughput ceiling is
``N / (W + latency)`` (N=100, W=1 s, 50 ms latency: 95 requests/s). Measured in
``benchmarks/ratelimit.py``.

Fractional rates: a one-second window holds a whole number of requests, so ``N >= 1`` must
be a whole number (:class:`~flinks_async.ConfigurationError` otherwise). ``0 < N < 1``
means one request per ``W / N`` seconds (0.5: one request every 2 s).

Fairness: callers are served first come, first served (a fair lock). A caller cancelled
while it waits takes no slot. :meth:`RateLimiter.acquire` with ``priority=True`` goes
ahead of the queue (still within the rule): it is used for the ``/Authorize`` request
right after its single-use token was minted, so the token never waits behind the queue.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time

__all__ = ["RateLimiter", "capacity_and_window"]


def capacity_and_window(rate: float, window: float = 1.0) -> tuple[int, float]:
    """``(N, W)`` for ``rate`` requests per ``window`` seconds (see the module docstring)."""
    if rate <= 0 or window <= 0 or math.isnan(rate) or math.isinf(rate):
        raise ValueError("rate_limit and rate_limit_window must be > 0")
    if rate >= 1:
        if rate != int(rate):
            raise ValueError(
                f"rate_limit={rate} is not a whole number: a window holds whole requests "
                f"(use {int(rate)}, or a longer rate_limit_window)"
            )
        return int(rate), window
    return 1, window / rate


class RateLimiter:
    """At most ``capacity`` requests occupying at once (see the module docstring).

    Use: ``await limiter.acquire()`` before sending, then exactly one
    ``limiter.release()`` when the answer's headers arrive, the request fails, or it is
    cancelled after :meth:`acquire` returned.

    Built like :class:`asyncio.Semaphore`: one queue of waiting futures (first come, first
    served; ``priority`` callers go to its front) and one :meth:`_dispatch` that grants
    slots while they are free. It runs after every change (a release, a cancellation, a
    new waiter) and from one timer set for when the oldest answer leaves the window, so
    no wake-up can be lost.
    """

    def __init__(self, capacity: int, window: float) -> None:
        if capacity < 1 or window <= 0:
            raise ValueError("capacity must be >= 1 and window > 0")
        self.capacity = capacity
        self.window = window
        self.in_flight = 0
        #: when the answers of finished requests began, oldest first (monotonic clock)
        self._finished: collections.deque[float] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def answered(self) -> collections.deque[float]:
        """When the answers still counted began, oldest first (monotonic clock): the shared
        limiter fills it when it falls back to a local share, and reads it when it returns."""
        return self._finished

    def occupying(self, now: float | None = None) -> int:
        """Requests holding a slot now: in flight, or answered less than ``window`` ago."""
        finished = self._finished
        horizon = (time.monotonic() if now is None else now) - self.window
        while finished and finished[0] <= horizon:
            finished.popleft()
        return self.in_flight + len(finished)

    async def acquire(self, *, priority: bool = False) -> None:
        """Wait for a slot (first come, first served unless ``priority``)."""
        if not self._waiters and self.occupying() < self.capacity:
            self.in_flight += 1  # fast path: a slot is free and nobody waits
            return
        granted = asyncio.get_running_loop().create_future()
        if priority:
            self._waiters.appendleft(granted)
        else:
            self._waiters.append(granted)
        self._dispatch()
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.in_flight -= 1  # granted, then cancelled before use: hand it back
            else:
                granted.cancel()  # _dispatch drops it
            self._dispatch()
            raise

    def release(self, token: object = None) -> None:
        """The request's answer began to arrive, or it failed or was cancelled (``token``:
        what :meth:`acquire` returned, for the shared limiter's interface; unused here)."""
        self.in_flight -= 1
        self._finished.append(time.monotonic())
        self._dispatch()

    def _dispatch(self) -> None:
        """Grant free slots to the waiters in order; set the timer for the next one."""
        waiters = self._waiters
        while waiters:
            if waiters[0].done():  # cancelled while waiting
                waiters.popleft()
                continue
            if self.occupying() >= self.capacity:
                break
            self.in_flight += 1
            waiters.popleft().set_result(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if waiters and self._finished:  # a slot frees when the oldest answer ages out
            delay = self._finished[0] + self.window - time.monotonic()
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._dispatch)
        # else: every slot is in flight, and the next release() dispatches

    def abandon(self) -> None:
        """Wake every waiter at once, as if granted: the limiter is being replaced (the
        shared limiter, back on Redis), and each waiter, seeing that, releases and asks
        the new one."""
        while self._waiters:
            granted = self._waiters.popleft()
            if not granted.done():
                self.in_flight += 1
                granted.set_result(None)
