"""The blocking client against the async one, on the same emulator (its own core).

* **One thread**: logins called one after another, small answers (no 202, 2 KB
  ``/Investments``): a blocking call's wall time (``SyncFlinksClient.investments``: the
  call handed to the client's loop thread, its result handed back) against the same
  call awaited in ``asyncio.run`` (median per call; target: at most 1.10x).
* **32 threads, one client**: 1,000 logins (two 202s each, 5 ms polls) pulled by 32
  threads sharing one ``SyncFlinksClient`` (a ``ThreadPoolExecutor.map``), against the
  async fan-out with ``concurrency=32``: logins per second (target: at least 90%), and
  the client process's CPU per login.

Rounds alternate the two contenders (``alternate``), so drift hits both alike; the
32-thread comparison after one warm-up round each (its first round started the thread
pool's threads). The
client process is pinned to one core, as in every section: the loop thread and the
callers' threads share it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio

from flinks_async import FlinksClient, SyncFlinksClient
from flinks_async.testing import demo_login_ids

from ._common import CUSTOMER, Stat, alternate, cpu_seconds, emulator_process, table

THREADS = 32


@dataclasses.dataclass
class BlockingResult:
    per_call: dict[str, Stat]  # seconds per call, one thread
    throughput: dict[str, Stat]  # logins per second, 32 threads / concurrency 32
    cpu: dict[str, Stat]  # client CPU seconds per login, 32 threads / concurrency 32
    calls: int
    logins: int


def _options(url: str) -> dict[str, Any]:
    return {"base_url": url, "poll_interval": 0.005, "poll_timeout": 60.0}


def _one_thread(url: str, ids: list[str]) -> tuple[Callable[[], float], Callable[[], float]]:
    def sync() -> float:
        with SyncFlinksClient(CUSTOMER, **_options(url)) as client:
            client.investments(ids[0])  # warm: the loop, the pool
            start = time.perf_counter()
            for login in ids:
                client.investments(login)
            return (time.perf_counter() - start) / len(ids)

    async def run_async() -> float:
        async with FlinksClient(CUSTOMER, **_options(url)) as client:
            await client.investments(ids[0])
            start = time.perf_counter()
            for login in ids:
                await client.investments(login)
            return (time.perf_counter() - start) / len(ids)

    return sync, lambda: asyncio.run(run_async())


def _threads(
    url: str, ids: list[str], cpu: dict[str, list[float]]
) -> tuple[Callable[[], float], Callable[[], float]]:
    """The two contenders (logins per second); each also notes its process CPU per login
    in ``cpu`` (a figure the machine's other load does not move as much)."""

    def sync() -> float:
        with SyncFlinksClient(CUSTOMER, **_options(url)) as client:
            client.investments(ids[0])
            start, cpu_start = time.perf_counter(), cpu_seconds()
            with ThreadPoolExecutor(THREADS) as pool:
                done = sum(1 for _ in pool.map(client.investments, ids))
            cpu["blocking"].append((cpu_seconds() - cpu_start) / done)
            return done / (time.perf_counter() - start)

    async def run_async() -> float:
        async with FlinksClient(CUSTOMER, **_options(url)) as client:
            await client.investments(ids[0])
            start, cpu_start = time.perf_counter(), cpu_seconds()
            async with client.investments_many(ids, concurrency=THREADS) as results:
                done = sum([1 async for r in results if r.ok])
            cpu["async"].append((cpu_seconds() - cpu_start) / done)
            return done / (time.perf_counter() - start)

    return sync, lambda: asyncio.run(run_async())


async def run(calls: int, logins: int, rounds: int) -> BlockingResult:
    """Both comparisons, ``rounds`` alternated rounds each (the contenders run in worker
    threads: each starts its own loop)."""
    async with emulator_process("--pending", "0", "--payload-bytes", "2000") as emu:
        sync, run_async = _one_thread(emu.url, demo_login_ids(calls, seed=34))
        contenders = [("blocking", sync), ("async", run_async)]
        per_call = await anyio.to_thread.run_sync(alternate, rounds, contenders)
    async with emulator_process("--pending", "2") as emu:
        cpu: dict[str, list[float]] = {"blocking": [], "async": []}
        sync, run_async = _threads(emu.url, demo_login_ids(logins, seed=35), cpu)
        contenders = [("blocking", sync), ("async", run_async)]
        await anyio.to_thread.run_sync(alternate, 1, contenders)  # warm-up, not counted
        for values in cpu.values():
            values.clear()
        throughput = await anyio.to_thread.run_sync(alternate, rounds, contenders)
    cpu_stats = {name: Stat(values) for name, values in cpu.items()}
    return BlockingResult(per_call, throughput, cpu_stats, calls, logins)


def markdown(r: BlockingResult) -> str:
    one = r.per_call["blocking"].median / r.per_call["async"].median
    many = r.throughput["blocking"].median / r.throughput["async"].median
    rows = [
        (
            f"one thread, {r.calls} calls one after another (small answers)",
            r.per_call["blocking"].fmt("ms", 1e3, 3) + " per call",
            r.per_call["async"].fmt("ms", 1e3, 3) + " per call",
            f"{one:.2f}x the async wall time (target ≤ 1.10x)",
        ),
        (
            f"{THREADS} threads on one client, {r.logins} logins (two 202s each)",
            r.throughput["blocking"].fmt("logins/s", 1, 0),
            r.throughput["async"].fmt("logins/s", 1, 0) + f" (fan-out, concurrency {THREADS})",
            f"{many:.0%} of the async throughput (target ≥ 90%)",
        ),
        (
            "the same: client CPU per login",
            r.cpu["blocking"].fmt("µs", 1e6, 0),
            r.cpu["async"].fmt("µs", 1e6, 0),
            f"{r.cpu['blocking'].median / r.cpu['async'].median:.2f}x the async CPU",
        ),
    ]
    return (
        table(("work", "blocking client", "async client", "ratio"), rows)
        + "\n\nMedian of the rounds (min–max in brackets). The client's CPU per login is"
        " the figure to read on a loaded machine: with the one core it is pinned to"
        " saturated, throughput follows it (the blocking client's extra CPU is its"
        " threads' handovers: a thread woken per call, and the GIL passed between them)."
    )
