"""The blocking client against the async one, on the same emulator (its own core).

* **One thread**: logins called one after another, small answers (no 202, 2 KB
  ``/Investments``): a blocking call's wall time (``SyncFlinksClient.investments``: the
  calling thread runs the client's loop itself) against the same call awaited in
  ``asyncio.run`` (median per call; target: at most 1.10x).
* **32 threads, one client**: 1,000 logins (two 202s each, 5 ms polls) pulled by 32
  threads sharing one ``SyncFlinksClient``, against the async fan-out with
  ``concurrency=32``: logins per second (target: at least 90%), the client process's CPU
  per login, and the cyclic GC's collections per 1,000 logins. Two ways of running the
  threads:

  - **threads** (the target's row): 32 ``threading.Thread``, each taking the next login
    from one shared iterator and counting its results, as a threaded web server's or a
    Celery pool's threads each make their own calls;
  - **ThreadPoolExecutor.map**: the same through a pool, whose ``map`` makes a
    ``Future`` per login up front and wakes the consuming thread per result: the pool's
    own cost, shown beside (it is not the client's).

Rounds alternate the contenders (``alternate``), so drift hits all alike. In each round
a contender pulls the 1,000 logins twice with one client and times the second pull: the
cyclic GC's counts are the process's, so a collection made due by one contender's
garbage lands in whatever runs next. The first pull pays what the previous contender
left (and starts the threads and connections); the timed one pays what its own first
pull left, as in a process that only ever runs it. The client process is pinned to one
core, as in every section: the loop's thread and the callers' threads share it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio

from flinks_async import FlinksClient, SyncFlinksClient
from flinks_async.testing import demo_login_ids

from ._common import CUSTOMER, Stat, alternate, cpu_seconds, emulator_process, table

THREADS = 32


#: the 32-thread contenders, in the table's order
THREADED = ("threads", "pool", "async")


@dataclasses.dataclass
class BlockingResult:
    per_call: dict[str, Stat]  # seconds per call, one thread
    throughput: dict[str, Stat]  # logins per second, 32 threads / concurrency 32
    cpu: dict[str, Stat]  # client CPU seconds per login, 32 threads / concurrency 32
    collections: dict[str, Stat]  # the cyclic GC's collections (any generation) per round
    calls: int
    logins: int


class _Collections:
    """Counts the cyclic GC's collections (``gc.callbacks``) while it is in use."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.count += 1

    def __enter__(self) -> _Collections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self)


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
    url: str, ids: list[str], cpu: dict[str, list[float]], gcs: dict[str, list[float]]
) -> list[tuple[str, Callable[[], float]]]:
    """The three contenders (logins per second); each also notes its process CPU per login
    in ``cpu`` (a figure the machine's other load does not move as much) and its GC
    collections in ``gcs``."""

    def timed(name: str, pull: Callable[[], int]) -> float:
        pull()  # settling: pays the GC debt the previous contender left (see the docstring)
        start, cpu_start = time.perf_counter(), cpu_seconds()
        with _Collections() as collections:
            done = pull()
        elapsed = time.perf_counter() - start
        cpu[name].append((cpu_seconds() - cpu_start) / done)
        gcs[name].append(collections.count)
        return done / elapsed

    def threads() -> float:
        with SyncFlinksClient(CUSTOMER, **_options(url)) as client:
            client.investments(ids[0])

            def pull() -> int:
                logins, lock, done = iter(ids), threading.Lock(), [0] * THREADS

                def work(me: int) -> None:
                    while True:
                        with lock:
                            login = next(logins, None)
                        if login is None:
                            return
                        client.investments(login)
                        done[me] += 1

                workers = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join()
                return sum(done)

            return timed("threads", pull)

    def pool() -> float:
        with SyncFlinksClient(CUSTOMER, **_options(url)) as client:
            client.investments(ids[0])

            def pull() -> int:
                with ThreadPoolExecutor(THREADS) as pool:
                    return sum(1 for _ in pool.map(client.investments, ids))

            return timed("pool", pull)

    async def run_async() -> float:
        async with FlinksClient(CUSTOMER, **_options(url)) as client:
            await client.investments(ids[0])

            async def pull() -> int:
                async with client.investments_many(ids, concurrency=THREADS) as results:
                    return sum([1 async for r in results if r.ok])

            await pull()  # settling, as above
            start, cpu_start = time.perf_counter(), cpu_seconds()
            with _Collections() as collections:
                done = await pull()
            elapsed = time.perf_counter() - start
            cpu["async"].append((cpu_seconds() - cpu_start) / done)
            gcs["async"].append(collections.count)
            return done / elapsed

    return [("threads", threads), ("pool", pool), ("async", lambda: asyncio.run(run_async()))]


async def run(calls: int, logins: int, rounds: int) -> BlockingResult:
    """Both comparisons, ``rounds`` alternated rounds each (the contenders run in worker
    threads: each starts its own loop)."""
    async with emulator_process("--pending", "0", "--payload-bytes", "2000") as emu:
        sync, run_async = _one_thread(emu.url, demo_login_ids(calls, seed=34))
        contenders = [("blocking", sync), ("async", run_async)]
        per_call = await anyio.to_thread.run_sync(alternate, rounds, contenders)
    async with emulator_process("--pending", "2") as emu:
        cpu: dict[str, list[float]] = {name: [] for name in THREADED}
        gcs: dict[str, list[float]] = {name: [] for name in THREADED}
        contenders = _threads(emu.url, demo_login_ids(logins, seed=35), cpu, gcs)
        throughput = await anyio.to_thread.run_sync(alternate, rounds, contenders)
    cpu_stats = {name: Stat(values) for name, values in cpu.items()}
    gc_stats = {name: Stat([n * 1000 / logins for n in v]) for name, v in gcs.items()}
    return BlockingResult(per_call, throughput, cpu_stats, gc_stats, calls, logins)


def _count(stat: Stat) -> str:
    return stat.fmt("", 1, 0).replace("  ", " ")


def markdown(r: BlockingResult) -> str:
    one = r.per_call["blocking"].median / r.per_call["async"].median
    t, c, g = r.throughput, r.cpu, r.collections

    def ratio(name: str) -> str:
        return f"{t[name].median / t['async'].median:.0%} of the async throughput"

    work = f"{THREADS} threads on one client, {r.logins} logins (two 202s each)"
    rows = [
        (
            f"one thread, {r.calls} calls one after another (small answers)",
            r.per_call["blocking"].fmt("ms", 1e3, 3) + " per call",
            r.per_call["async"].fmt("ms", 1e3, 3) + " per call",
            f"{one:.2f}x the async wall time (target ≤ 1.10x)",
        ),
        (
            work + ": threads",
            t["threads"].fmt("logins/s", 1, 0),
            t["async"].fmt("logins/s", 1, 0) + f" (fan-out, concurrency {THREADS})",
            ratio("threads") + " (target ≥ 90%)",
        ),
        (
            work + ": `ThreadPoolExecutor.map`",
            t["pool"].fmt("logins/s", 1, 0),
            t["async"].fmt("logins/s", 1, 0),
            ratio("pool") + " (the pool's own futures included)",
        ),
        (
            "the same: client CPU per login (threads / pool)",
            c["threads"].fmt("µs", 1e6, 0) + " / " + c["pool"].fmt("µs", 1e6, 0),
            c["async"].fmt("µs", 1e6, 0),
            f"{c['threads'].median / c['async'].median:.2f}x / "
            f"{c['pool'].median / c['async'].median:.2f}x the async CPU",
        ),
        (
            "the same: GC collections per 1,000 logins (threads / pool)",
            _count(g["threads"]) + " / " + _count(g["pool"]),
            _count(g["async"]),
            f"{g['threads'].median / max(g['async'].median, 1):.1f}x / "
            f"{g['pool'].median / max(g['async'].median, 1):.1f}x",
        ),
    ]
    return (
        table(("work", "blocking client", "async client", "ratio"), rows)
        + "\n\nMedian of the rounds (min–max in brackets). The client's CPU per login is"
        " the figure to read on a loaded machine: with the one core it is pinned to"
        " saturated, throughput follows it. The blocking client's extra CPU is its"
        " threads' handovers (a thread woken per call, the GIL passed between them) and"
        " the cyclic GC: each result is made in the loop's thread and freed in its"
        " caller's, and CPython counts a free only while its count of young objects is"
        " above zero, so frees landing just after a collection are not counted and"
        " collections come more often (see docs/performance.md)."
    )
