"""The blocking client against the async one, on the same emulator (its own core).

* **One thread**: logins called one after another, small answers (no 202, 2 KB
  ``/Investments``): a blocking call's wall time (``SyncFlinksClient.investments``: the
  call handed to the client's loop thread, its result handed back) against the same
  call awaited in ``asyncio.run`` (median per call; target: at most 1.10x).
* **32 threads, one client**: 1,000 logins (two 202s each, 5 ms polls) pulled by 32
  threads sharing one ``SyncFlinksClient`` (a ``ThreadPoolExecutor.map``), against the
  async fan-out with ``concurrency=32``: logins per second (target: at least 90%).

Rounds alternate the two contenders (``alternate``), so drift hits both alike. The
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

from ._common import CUSTOMER, Stat, alternate, emulator_process, table

THREADS = 32


@dataclasses.dataclass
class BlockingResult:
    per_call: dict[str, Stat]  # seconds per call, one thread
    throughput: dict[str, Stat]  # logins per second, 32 threads / concurrency 32
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


def _threads(url: str, ids: list[str]) -> tuple[Callable[[], float], Callable[[], float]]:
    def sync() -> float:
        with SyncFlinksClient(CUSTOMER, **_options(url)) as client:
            client.investments(ids[0])
            start = time.perf_counter()
            with ThreadPoolExecutor(THREADS) as pool:
                done = sum(1 for _ in pool.map(client.investments, ids))
            return done / (time.perf_counter() - start)

    async def run_async() -> float:
        async with FlinksClient(CUSTOMER, **_options(url)) as client:
            await client.investments(ids[0])
            start = time.perf_counter()
            async with client.investments_many(ids, concurrency=THREADS) as results:
                done = sum([1 async for r in results if r.ok])
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
        sync, run_async = _threads(emu.url, demo_login_ids(logins, seed=35))
        contenders = [("blocking", sync), ("async", run_async)]
        throughput = await anyio.to_thread.run_sync(alternate, rounds, contenders)
    return BlockingResult(per_call, throughput, calls, logins)


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
    ]
    return (
        table(("work", "blocking client", "async client", "ratio"), rows)
        + "\n\nMedian of the rounds (min–max in brackets)."
    )
