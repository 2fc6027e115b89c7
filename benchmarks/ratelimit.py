"""``rate_limit`` as the server counts it: the busiest one-second window of arrivals and
the throughput achieved, with the emulator answering after a fixed latency.

Contenders, alternated per round on the same workload (a burst of logins, each Authorize,
one 202, the 200): the arrival-safe limiter (ours, a slot held from send to answer + W) and
v0.1's sliding window of *start* times, rebuilt here for comparison. The goal for ours:
never more than the limit in any window, and at least 90% of the limit as throughput.
"""

from __future__ import annotations

import collections
import dataclasses
import time

import anyio

from flinks_async import FlinksClient
from flinks_async._ratelimit import RateLimiter
from flinks_async.testing import Emulator, busiest_window, demo_login_ids

from ._common import CUSTOMER, table

RATE = 100


class StartStampedWindow:
    """v0.1's limiter: at most N *starts* in any window (wrong on the server's clock)."""

    def __init__(self, capacity: int, window: float) -> None:
        self.capacity, self.window = capacity, window
        self._starts: collections.deque[float] = collections.deque(maxlen=capacity)
        self._lock = anyio.Lock()

    async def acquire(self, *, priority: bool = False) -> None:
        async with self._lock:
            while len(self._starts) == self.capacity:
                wait = self._starts[0] + self.window - time.monotonic()
                if wait <= 0:
                    break
                await anyio.sleep(wait)
            self._starts.append(time.monotonic())

    def release(self) -> None:
        pass


@dataclasses.dataclass
class RateResult:
    latency: float
    logins: int
    #: contender -> (busiest one-second window, steady arrivals per second)
    runs: dict[str, list[tuple[int, float]]]


def _steady_rate(times: list[float]) -> float:
    """Sustained arrivals per second: those after the first window's burst (the first
    ``RATE``), over the time from the first arrival to the last. Under a burst workload
    both limiters send in bursts one window (plus latency) apart, which this counts
    exactly: k bursts of N give ``N (k - 1) / ((k - 1) (W + latency))``."""
    times = sorted(times)
    span = times[-1] - times[0]
    return (len(times) - RATE) / span if span > 0 else float("nan")


async def _one(
    make_limiter: type[object], latency: float, logins: int, seed: int
) -> tuple[int, float]:
    async with Emulator(pending=1, latency=latency, record=10 * logins) as emu:
        async with FlinksClient(
            CUSTOMER,
            base_url=emu.url,
            rate_limit=RATE,
            poll_interval=0.01,
            max_connections=1000,
        ) as client:
            client._transport._limiter = make_limiter(RATE, 1.0)  # type: ignore[call-arg,assignment]
            async with client.investments_many(
                demo_login_ids(logins, seed=seed), concurrency=1000
            ) as results:
                async for _ in results:
                    pass
        times = [r.received_at for r in emu.requests]
    return busiest_window(times, 1.0), _steady_rate(times)


async def run(
    latencies: tuple[float, ...] = (0.0, 0.05, 0.2), logins: int = 300, rounds: int = 1
) -> list[RateResult]:
    out = []
    for latency in latencies:
        runs: dict[str, list[tuple[int, float]]] = {"ours": [], "v0.1 start-stamped": []}
        for r in range(rounds):
            runs["ours"].append(await _one(RateLimiter, latency, logins, seed=r))
            runs["v0.1 start-stamped"].append(
                await _one(StartStampedWindow, latency, logins, seed=r)
            )
        out.append(RateResult(latency, logins, runs))
    return out


def markdown(results: list[RateResult]) -> str:
    rows = []
    for res in results:
        for name, runs in res.runs.items():
            peak = max(p for p, _ in runs)
            rate = sorted(r for _, r in runs)[len(runs) // 2]
            rows.append(
                (
                    f"{res.latency * 1e3:.0f} ms",
                    name,
                    f"**{peak}**" if peak > RATE else f"{peak}",
                    f"{rate:.1f}/s",
                    f"{rate / RATE:.0%}",
                )
            )
    head = (
        f"`rate_limit={RATE}` (one-second window), {results[0].logins} logins at concurrency "
        "1,000 (Authorize, one 202, the 200 each), emulator in process answering after the "
        "given latency. Counted on the emulator's recorded arrival times.\n\n"
    )
    return head + table(
        ["server latency", "limiter", "busiest 1 s window", "sustained throughput", "of the limit"],
        rows,
    )
