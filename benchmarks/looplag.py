"""Event-loop health while big payloads arrive.

A trivial task sleeps 5 ms in a loop and records how late it wakes (the loop lag) while
the client pulls logins whose 200 payload is ``size`` bytes (50 MB by default). Lag is
what every other request handler of a web app would wait.

Variants: decode into models in the loop (the default); ``raw=True`` (bytes for
archiving: only a check that the body is one JSON object); ``raw=True`` then decoding in
a worker thread (``anyio.to_thread``), to show why the client does not offer that: msgspec
holds the GIL while it decodes, so the loop thread waits anyway; and, for reference, no
pull at all. The emulator's payloads are generated before measuring.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import anyio
import anyio.to_thread

from flinks_async import FlinksClient, Investments
from flinks_async._models import decoder_for
from flinks_async.testing import demo_login_ids

from ._common import CUSTOMER, emulator_process, table

TICK = 0.005


@dataclasses.dataclass
class LagResult:
    variant: str
    p50: float
    p99: float
    max: float
    wall: float


async def _measure(url: str, variant: str, logins: int, seed: int) -> LagResult:
    lags: list[float] = []
    decoder = decoder_for(Investments)
    async with FlinksClient(CUSTOMER, base_url=url, poll_interval=0.01) as client:

        async def ticker() -> None:
            while True:
                start = time.perf_counter()
                await anyio.sleep(TICK)
                lags.append(time.perf_counter() - start - TICK)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            ids = demo_login_ids(logins, seed=seed)
            if variant == "idle (no pull)":
                await anyio.sleep(1.0)
            else:
                raw = variant != "decode in the loop (default)"
                thread = variant == "raw, then decode in a worker thread"
                async with client.investments_many(ids, concurrency=2, raw=raw) as results:
                    async for r in results:
                        assert r.ok, r.error
                        if thread:
                            assert isinstance(r.value, bytes)
                            body = r.value
                            await anyio.to_thread.run_sync(decoder.decode, body)
            tg.cancel_scope.cancel()
        wall = time.perf_counter() - started
    lags.sort()
    if not lags:  # the pull finished before the first tick
        return LagResult(variant, 0.0, 0.0, 0.0, wall)
    return LagResult(variant, statistics.median(lags), lags[int(len(lags) * 0.99)], lags[-1], wall)


VARIANTS = (
    "idle (no pull)",
    "decode in the loop (default)",
    "raw=True (archive bytes)",
    "raw, then decode in a worker thread",
)


async def run(size: int = 50_000_000, logins: int = 4) -> list[LagResult]:
    out = []
    async with emulator_process("--pending", "0", "--payload-bytes", str(size)) as emu:
        ids = demo_login_ids(logins, seed=100)
        async with FlinksClient(CUSTOMER, base_url=emu.url) as client:  # warm the emulator
            for login_id in ids:
                await client.investments(login_id, raw=True)
        for variant in VARIANTS:
            out.append(await _measure(emu.url, variant, logins, seed=100))
    return out


def markdown(results: list[LagResult], size: int) -> str:
    rows = [
        (
            r.variant,
            f"{r.p50 * 1e3:.1f}",
            f"{r.p99 * 1e3:.1f}",
            f"{r.max * 1e3:.1f}",
            f"{r.wall:.2f} s",
        )
        for r in results
    ]
    return table(
        [f"while pulling {size / 1e6:g} MB payloads", "lag p50 ms", "p99 ms", "max ms", "wall"],
        rows,
    )
