"""Capacity at Flinks' real poll interval: how many logins one process keeps in flight.

One ``client.investments_many(ids, concurrency=50_000)`` against the emulator in its own
process (pinned to the other core, on uvloop when installed), every login never ready, so
each is polled every ``poll_interval`` (10 s, +-10% jitter) for as long as it is in
flight. The id source starts ``ramp_rate`` logins a second up to each level (10k, 25k,
50k in flight); once the last of them has had one full poll interval to settle, the level
is held for ``hold`` seconds while we measure:

* event-loop lag: a task asking to sleep 10 ms, how much later it woke (p50 / p99 / max);
* client CPU (% of one core) over the window;
* RSS, and RSS growth per login in flight since before the fan-out started;
* open sockets of the client;
* polls per second as the emulator counted them (``GET /_emulator/stats``: the server's
  view, not the client's), against the schedule: ``logins in flight / poll_interval``.

Each runs twice: with Python's default garbage-collector thresholds, and with the GC set
up as ``flinks-async pull`` does (:func:`flinks_async._cli.tune_gc`: ``gc.freeze()``, a full
collection at most every :data:`~flinks_async._cli.FULL_GC_EVERY` generation-1 collections
instead of 10). Full collections walk every object the GC tracks, about 35 per login in
flight: the "full GCs" column counts those that ran during the window and the longest one
(``gc.callbacks``). At the top level one full collection is then timed (``gc.collect()``):
the pause it makes whenever it comes, and how often it comes (the threshold over the
generation-1 collections a second counted in the window).

Python allocations per login in flight (tracemalloc, exact but slow) and the objects the
GC tracks per login in flight come from a separate pass at the first level with
tracemalloc on from the start. Finally the fan-out is cancelled with 50k in flight: the
time until every task has ended (the ``async with`` exits), then until the client is
closed and its sockets are gone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import gc
import json
import multiprocessing
import statistics
import time
import tracemalloc
import urllib.request
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread

from flinks_async import FlinksClient
from flinks_async._cli import tune_gc
from flinks_async.testing import demo_login_ids

from ._common import (
    CUSTOMER,
    EmulatorProcess,
    cpu_seconds,
    emulator_process,
    open_sockets,
    rss_bytes,
    table,
)

LEVELS = (10_000, 25_000, 50_000)


@dataclasses.dataclass
class Level:
    in_flight: int
    lag_p50: float
    lag_p99: float
    lag_max: float
    cpu: float  # fraction of one core
    emulator_cpu: float
    rss: int
    rss_per_login: float
    sockets: int
    polls_per_s: float  # as the emulator counted them
    scheduled_per_s: float
    full_gcs: int  # full (generation 2) collections during the window
    full_gc_max: float  # seconds, the longest of them
    middle_gcs_per_s: float  # generation-1 collections a second (a full one per threshold[2])


@dataclasses.dataclass
class CapacityResult:
    loop: str
    gc_mode: str  # "default" or "tuned" (as `flinks-async pull`)
    poll_interval: float
    hold: float
    ramp_rate: int
    levels: list[Level]
    tracemalloc_per_login: float
    gc_objects_per_login: float
    tracemalloc_level: int
    full_gc_pause: float  # seconds: one full collection at the top level, timed
    #: seconds between full collections at the top level: counted in the window when any
    #: ran there, else the least the threshold allows (generation-1 collections a second)
    full_gc_every: float
    full_gc_every_counted: bool
    cancel_to_tasks_done: float
    cancel_to_sockets_closed: float
    failed: int


def _stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=10) as resp:
        data: dict[str, int] = json.load(resp)
    return data


async def _emulator_requests(url: str) -> int:
    return (await anyio.to_thread.run_sync(_stats, url))["requests_total"]


class _FullGCs:
    """Times full (generation 2) collections, through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def __enter__(self) -> _FullGCs:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)


class _Lag:
    """Samples event-loop lag: sleep 10 ms, record how late the wake-up came."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.01)
            self.samples.append(loop.time() - start - 0.01)


async def _feed(
    ids: list[str],
    levels: tuple[int, ...],
    ramp_rate: int,
    reached: list[anyio.Event],
    go: list[anyio.Event],
) -> AsyncIterator[str]:
    """Yield ``ids`` at ``ramp_rate`` a second up to each level, then wait for the go."""
    i = 0
    step = max(1, ramp_rate // 100)  # a batch every 10 ms
    for n, level in enumerate(levels):
        while i < level:
            for login_id in ids[i : min(level, i + step)]:
                yield login_id
            i = min(level, i + step)
            await anyio.sleep(step / ramp_rate)
        reached[n].set()
        await go[n].wait()
    await anyio.sleep_forever()


async def _tracemalloc_per_login(
    url: str, logins: int, poll_interval: float, ramp_rate: int
) -> tuple[float, float]:
    """Python allocations (bytes) and GC-tracked objects per login in flight."""
    ids = demo_login_ids(logins, seed=71)
    gc.collect()
    objects0 = len(gc.get_objects())
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        reached, go = [anyio.Event()], [anyio.Event()]
        async with FlinksClient(
            CUSTOMER,
            base_url=url,
            poll_interval=poll_interval,
            poll_timeout=24 * 3600,
            max_connections=200,
        ) as client:
            with anyio.CancelScope() as scope:
                async with client.investments_many(
                    _feed(ids, (logins,), ramp_rate, reached, go), concurrency=logins
                ) as results:
                    await reached[0].wait()
                    await anyio.sleep(poll_interval * 1.2)  # each has been polled
                    gc.collect()
                    held = tracemalloc.get_traced_memory()[0] - base
                    objects = len(gc.get_objects()) - objects0
                    scope.cancel()
                    async for _ in results:
                        pass
    finally:
        tracemalloc.stop()
    return held / logins, objects / logins


async def _measure(
    emu: EmulatorProcess,
    level: int,
    reached: anyio.Event,
    poll_interval: float,
    hold: float,
    lag: _Lag,
    rss0: int,
    sockets0: int,
    full_gcs: _FullGCs,
) -> Level:
    """Once ``level`` logins are in flight and settled, measure for ``hold`` seconds."""
    await reached.wait()
    await anyio.sleep(poll_interval * 1.1)  # the last ones started have been polled
    lag.samples.clear()
    full_gcs.pauses.clear()
    c0, e0 = cpu_seconds(), emu.cpu_seconds()
    m0 = gc.get_stats()[1]["collections"]
    r0, t0 = await _emulator_requests(emu.url), time.perf_counter()
    await anyio.sleep(hold)
    r1, t1 = await _emulator_requests(emu.url), time.perf_counter()
    c1, e1 = cpu_seconds(), emu.cpu_seconds()
    m1 = gc.get_stats()[1]["collections"]
    lags = sorted(lag.samples)
    rss = rss_bytes()
    return Level(
        in_flight=level,
        lag_p50=statistics.median(lags),
        lag_p99=lags[int(len(lags) * 0.99)],
        lag_max=lags[-1],
        cpu=(c1 - c0) / (t1 - t0),
        emulator_cpu=(e1 - e0) / (t1 - t0),
        rss=rss,
        rss_per_login=(rss - rss0) / level,
        sockets=open_sockets() - sockets0,
        polls_per_s=(r1 - r0) / (t1 - t0),
        scheduled_per_s=level / poll_interval,
        full_gcs=len(full_gcs.pauses),
        full_gc_max=max(full_gcs.pauses, default=0.0),
        middle_gcs_per_s=(m1 - m0) / (t1 - t0),
    )


async def _sockets_back(baseline: int, since: float) -> float:
    """Seconds from ``since`` until this process holds no more sockets than ``baseline``."""
    with anyio.move_on_after(30):
        while open_sockets() > baseline:  # noqa: ASYNC110 - the kernel's state, no event
            await anyio.sleep(0.005)
    return time.perf_counter() - since


async def run(
    levels: tuple[int, ...] = LEVELS,
    poll_interval: float = 10.0,
    hold: float = 20.0,
    ramp_rate: int = 5_000,
    loop: str = "asyncio",
    gc_mode: str = "default",
) -> CapacityResult:
    thresholds = gc.get_threshold()
    try:
        if gc_mode == "tuned":
            tune_gc()
        with _FullGCs() as full_gcs:
            return await _run(levels, poll_interval, hold, ramp_rate, loop, gc_mode, full_gcs)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def _run(
    levels: tuple[int, ...],
    poll_interval: float,
    hold: float,
    ramp_rate: int,
    loop: str,
    gc_mode: str,
    full_gcs: _FullGCs,
) -> CapacityResult:
    ids = demo_login_ids(max(levels), seed=70)
    async with emulator_process("--fault-rate", "never_ready=1") as emu:
        per_login, objects_per_login = await _tracemalloc_per_login(
            emu.url, levels[0], poll_interval, ramp_rate
        )
        gc.collect()
        rss0 = rss_bytes()
        sockets0 = open_sockets()
        reached = [anyio.Event() for _ in levels]
        go = [anyio.Event() for _ in levels]
        out: list[Level] = []
        failed = 0
        client = FlinksClient(
            CUSTOMER,
            base_url=emu.url,
            poll_interval=poll_interval,
            poll_timeout=24 * 3600,
            max_connections=200,
        )
        lag = _Lag()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lag.run)
                with anyio.CancelScope() as scope:
                    async with (
                        client.investments_many(
                            _feed(ids, levels, ramp_rate, reached, go), concurrency=max(levels)
                        ) as results,
                        anyio.create_task_group() as inner,
                    ):

                        async def drain() -> None:
                            nonlocal failed
                            async for r in results:
                                failed += not r.ok

                        inner.start_soon(drain)
                        for n, level in enumerate(levels):
                            out.append(
                                await _measure(
                                    emu,
                                    level,
                                    reached[n],
                                    poll_interval,
                                    hold,
                                    lag,
                                    rss0,
                                    sockets0,
                                    full_gcs,
                                )
                            )
                            go[n].set()
                        # The pause a full collection makes at the top level, when one
                        # comes (every threshold[2] generation-1 collections), then one
                        # poll interval for the schedule to catch up before the cancel.
                        started = time.perf_counter()
                        gc.collect()
                        full_gc_pause = time.perf_counter() - started
                        await anyio.sleep(poll_interval)
                        cancelled_at = time.perf_counter()
                        scope.cancel()
                tasks_done = time.perf_counter() - cancelled_at
                await client.aclose()
                sockets_closed = await _sockets_back(sockets0, cancelled_at)
                tg.cancel_scope.cancel()
        finally:
            await client.aclose()
    return CapacityResult(
        loop,
        gc_mode,
        poll_interval,
        hold,
        ramp_rate,
        out,
        per_login,
        objects_per_login,
        levels[0],
        full_gc_pause,
        hold / out[-1].full_gcs
        if out[-1].full_gcs
        else gc.get_threshold()[2] / max(out[-1].middle_gcs_per_s, 1e-9),
        bool(out[-1].full_gcs),
        tasks_done,
        sockets_closed,
        failed,
    )


def run_loops(
    levels: tuple[int, ...] = LEVELS,
    poll_interval: float = 10.0,
    hold: float = 20.0,
    ramp_rate: int = 5_000,
) -> list[CapacityResult]:
    """:func:`run` on asyncio, then on uvloop when it is installed; each with the default
    GC, then with the GC set up as ``pull`` does. Each run in a fresh process, so that its
    RSS is its own (an allocator keeps what an earlier run freed)."""
    from .transport import _has_uvloop

    out = []
    spawn = multiprocessing.get_context("spawn")
    for loop in ("asyncio", "uvloop") if _has_uvloop() else ("asyncio",):
        for gc_mode in ("default", "tuned"):
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
                args = (levels, poll_interval, hold, ramp_rate, loop, gc_mode)
                out.append(pool.submit(_run_on, *args).result())
    return out


def _run_on(
    levels: tuple[int, ...],
    poll_interval: float,
    hold: float,
    ramp_rate: int,
    loop: str,
    gc_mode: str,
) -> CapacityResult:
    """:func:`run` on ``loop`` ("asyncio" or "uvloop"), in the calling thread."""
    options = {"use_uvloop": True} if loop == "uvloop" else {}
    return anyio.run(
        run, levels, poll_interval, hold, ramp_rate, loop, gc_mode, backend_options=options
    )


def _every(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def markdown(results: list[CapacityResult]) -> str:
    rows = []
    for r in results:
        for lv in r.levels:
            rows.append(
                (
                    r.loop,
                    r.gc_mode,
                    f"{lv.in_flight:,}",
                    f"{lv.lag_p50 * 1e3:.1f} / {lv.lag_p99 * 1e3:.1f} / {lv.lag_max * 1e3:.0f}",
                    f"{lv.cpu:.0%}",
                    f"{lv.emulator_cpu:.0%}",
                    f"{lv.rss / 1e6:,.0f} MB ({lv.rss_per_login / 1024:.1f} KB/login)",
                    lv.sockets,
                    f"{lv.polls_per_s:,.0f} / {lv.scheduled_per_s:,.0f} "
                    f"({lv.polls_per_s / lv.scheduled_per_s:.1%})",
                    f"{lv.full_gcs} (longest {lv.full_gc_max * 1e3:,.0f} ms)"
                    if lv.full_gcs
                    else "0",
                )
            )
    head = table(
        [
            "loop",
            "GC",
            "in flight",
            "loop lag p50 / p99 / max (ms)",
            "client CPU",
            "emulator CPU",
            "RSS (growth per login)",
            "client sockets",
            "polls/s at the server / scheduled",
            "full GCs in the window",
        ],
        rows,
    )
    tail = table(
        [
            "loop",
            "GC",
            "Python allocations per login in flight (tracemalloc)",
            "objects the GC tracks per login in flight",
            f"a full GC at {results[0].levels[-1].in_flight:,}: pause / every",
            "cancel → all tasks ended",
            "cancel → client closed, sockets gone",
            "failed logins",
        ],
        [
            (
                r.loop,
                r.gc_mode,
                f"{r.tracemalloc_per_login / 1024:.1f} KB (at {r.tracemalloc_level:,})",
                f"{r.gc_objects_per_login:.0f}",
                f"{r.full_gc_pause * 1e3:,.0f} ms / "
                f"{'' if r.full_gc_every_counted else '≥ '}{_every(r.full_gc_every)}",
                f"{r.cancel_to_tasks_done * 1e3:.0f} ms",
                f"{r.cancel_to_sockets_closed * 1e3:.0f} ms",
                r.failed,
            )
            for r in results
        ],
    )
    r0 = results[0]
    return (
        f"Every login never ready, polled every {r0.poll_interval:g} s (+-10%), started "
        f"{r0.ramp_rate:,} a second up to each level; each level measured for {r0.hold:g} s "
        f"once settled.\n\n{head}\n\n{tail}\n\nA full GC's pause is one `gc.collect()` "
        "timed at the top level; how often one comes is counted in the window when any ran "
        "there, else it is the least the third threshold allows (≥: that many "
        "generation-1 collections, at the rate counted in the window)."
    )
