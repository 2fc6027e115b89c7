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

import collections
import math
import time

import anyio

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
    """

    def __init__(self, capacity: int, window: float) -> None:
        if capacity < 1 or window <= 0:
            raise ValueError("capacity must be >= 1 and window > 0")
        self.capacity = capacity
        self.window = window
        self.in_flight = 0
        #: when the answers of finished requests began, oldest first (monotonic clock)
        self._finished: collections.deque[float] = collections.deque()
        self._queue = anyio.Lock()  # FIFO
        self._priority = 0  # priority callers waiting: the queue's head yields to them
        self._changed = anyio.Event()

    def occupying(self, now: float | None = None) -> int:
        """Requests holding a slot now: in flight, or answered less than ``window`` ago."""
        finished = self._finished
        horizon = (time.monotonic() if now is None else now) - self.window
        while finished and finished[0] <= horizon:
            finished.popleft()
        return self.in_flight + len(finished)

    async def acquire(self, *, priority: bool = False) -> None:
        """Wait for a slot (first come, first served unless ``priority``)."""
        if not self._queue.locked() and not self._priority and self._free():
            self.in_flight += 1  # fast path: a slot is free and nobody waits
            return
        if priority:
            self._priority += 1
            try:
                await self._wait(priority=True)
            finally:
                self._priority -= 1
                self._notify()
        else:
            async with self._queue:
                await self._wait(priority=False)
        self.in_flight += 1

    def release(self) -> None:
        """The request's answer began to arrive, or it failed or was cancelled."""
        self.in_flight -= 1
        self._finished.append(time.monotonic())
        self._notify()

    def _free(self) -> bool:
        return self.occupying() < self.capacity

    async def _wait(self, *, priority: bool) -> None:
        while not (self._free() and (priority or not self._priority)):
            changed = self._changed
            if self._finished and self.occupying() >= self.capacity:
                timeout = self._finished[0] + self.window - time.monotonic()
            else:  # all slots in flight (or yielding to a priority caller)
                timeout = math.inf
            with anyio.move_on_after(max(timeout, 0.0)):
                await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
