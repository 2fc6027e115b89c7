"""Event-loop health while big payloads arrive.

A trivial task sleeps 5 ms in a loop and records how late it wakes (the loop lag) while
the client pulls logins whose 200 payload is ``size`` bytes (25 and 50 MB), two at a time.
Lag is what every other request handler of a web app would wait.

Variants, on asyncio and on uvloop:

* typed, in slices (the default): decoded into models a piece at a time, the loop running
  other tasks in between (:mod:`flinks_async._slices`);
* typed, in one go: the same with slicing turned off (``SLICE_FROM`` out of reach), as
  every answer was decoded before slicing;
* ``raw=True`` (bytes for archiving: only a check that the body is JSON holding a data
  key), in slices and in one go;
* ``raw=True`` then decoding in a worker thread (``anyio.to_thread``), to show why the
  client does not offer that: msgspec holds the GIL while it decodes, so the loop thread
  waits anyway;
* for reference, no pull at all.

The answers are kept until the measurement ends: what is measured is the client's lag,
not the cost of freeing a 50 MB answer's models, which CPython pays in one go wherever
the application drops them (45-65 ms for a 50 MB answer here, stated in
docs/web-apps.md). Each variant runs 3 times, in turn with the others: lag
percentiles are over every round's ticks, ``wall`` is the median time of the whole pull;
"vs one go" divides a sliced variant's by its one-go twin's (same size, loop and kind).
The emulator's payloads are generated before measuring.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import anyio
import anyio.to_thread

from flinks_async import FlinksClient, Investments, _slices
from flinks_async._models import decoder_for
from flinks_async.testing import demo_login_ids

from ._common import CUSTOMER, emulator_process, table

TICK = 0.005
IDLE = "idle (no pull)"
TYPED = "typed, in slices (default)"
TYPED_ONE_GO = "typed, in one go (before)"
RAW = "raw=True, in slices"
RAW_ONE_GO = "raw=True, in one go (before)"
THREAD = "raw, then decode in a worker thread"
VARIANTS = (IDLE, TYPED, TYPED_ONE_GO, RAW, RAW_ONE_GO, THREAD)
TWIN = {TYPED: TYPED_ONE_GO, RAW: RAW_ONE_GO}


@dataclasses.dataclass
class LagResult:
    loop: str
    size: int
    variant: str
    p50: float
    p99: float
    max: float
    wall: float


async def _measure(url: str, variant: str, ids: list[str]) -> tuple[list[float], float]:
    lags: list[float] = []
    kept: list[object] = []  # freed after the measurement (see the module docstring)
    decoder = decoder_for(Investments)
    sliced_from = _slices.SLICE_FROM
    if variant in (TYPED_ONE_GO, RAW_ONE_GO, THREAD):
        _slices.SLICE_FROM = 1 << 62
    try:
        async with FlinksClient(CUSTOMER, base_url=url, poll_interval=0.01) as client:

            async def ticker() -> None:
                while True:
                    start = time.perf_counter()
                    await anyio.sleep(TICK)
                    lags.append(time.perf_counter() - start - TICK)

            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                if variant == IDLE:
                    await anyio.sleep(1.0)
                else:
                    raw = variant in (RAW, RAW_ONE_GO, THREAD)
                    async with client.many("investments", ids, concurrency=2, raw=raw) as results:
                        async for r in results:
                            assert r.ok, r.error
                            kept.append(r)
                            if variant == THREAD:
                                assert isinstance(r.value, bytes)
                                body = r.value
                                await anyio.to_thread.run_sync(decoder.decode, body)
                tg.cancel_scope.cancel()
            wall = time.perf_counter() - started
    finally:
        _slices.SLICE_FROM = sliced_from
    return sorted(lags), wall


async def run(
    sizes: tuple[int, ...] = (25_000_000, 50_000_000),
    logins: int = 4,
    loop: str = "asyncio",
    rounds: int = 3,
) -> list[LagResult]:
    """Every variant at every size on the running loop (named ``loop`` in the results),
    ``rounds`` times: lag percentiles over every round's ticks, the median wall time."""
    out = []
    for size in sizes:
        async with emulator_process("--pending", "0", "--payload-bytes", str(size)) as emu:
            ids = demo_login_ids(logins, seed=100)
            async with FlinksClient(CUSTOMER, base_url=emu.url) as client:  # warm the emulator
                for login_id in ids:
                    await client.raw.investments(login_id)
            pooled: dict[str, list[float]] = {v: [] for v in VARIANTS}
            walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(rounds):  # the variants alternate: the machine's drift hits all
                for variant in VARIANTS:
                    lags, wall = await _measure(emu.url, variant, ids)
                    pooled[variant] += lags
                    walls[variant].append(wall)
            for variant in VARIANTS:
                lags = sorted(pooled[variant]) or [0.0]  # [] if every pull beat the first tick
                p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
                wall = statistics.median(walls[variant])
                out.append(
                    LagResult(loop, size, variant, statistics.median(lags), p99, lags[-1], wall)
                )
    return out


def run_loops(
    sizes: tuple[int, ...] = (25_000_000, 50_000_000), logins: int = 4
) -> list[LagResult]:
    """:func:`run` on asyncio, then on uvloop when it is installed."""
    from .transport import _has_uvloop

    out = anyio.run(run, sizes, logins, "asyncio")
    if _has_uvloop():
        out += anyio.run(run, sizes, logins, "uvloop", backend_options={"use_uvloop": True})
    return out


def markdown(results: list[LagResult]) -> str:
    walls = {(r.loop, r.size, r.variant): r.wall for r in results}
    rows = []
    for r in results:
        twin = walls.get((r.loop, r.size, TWIN.get(r.variant, "")))
        rows.append(
            (
                r.loop,
                f"{r.size / 1e6:g} MB",
                r.variant,
                f"{r.p50 * 1e3:.1f}",
                f"{r.p99 * 1e3:.1f}",
                f"{r.max * 1e3:.1f}",
                f"{r.wall:.2f} s",
                f"{r.wall / twin:.2f}x" if twin else "",
            )
        )
    return table(
        [
            "loop",
            "payload",
            "4 logins, 2 at a time",
            "lag p50 ms",
            "p99 ms",
            "max ms",
            "wall",
            "vs one go",
        ],
        rows,
    )
