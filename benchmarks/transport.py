"""Transport overhead: the full Authorize + poll-until-200 loop for many logins.

Four contenders, the same work, the same emulator process (on its own core), each
decoding the 200 into the same ``Investments`` struct:

* ``flinks-async many``: ``client.investments_many(ids, concurrency=C)``;
* ``flinks-async direct``: ``client.investments(id)`` per login from an anyio task group
  behind a ``CapacityLimiter(C)`` (what a web app's handlers amount to);
* ``bare aiohttp``: the floor, a hand-written loop with one ``aiohttp.ClientSession``
  (POST Authorize, POST Investments until 200, then decode); no retries, no error
  mapping, no validation, no single-flight, no deadline;
* ``httpx``: the same loop with ``httpx.AsyncClient`` (what most SDKs use).

Each runs on the standard asyncio loop and on uvloop (``loop`` below), the emulator on
uvloop when it is installed.

Each round pulls fresh logins (the emulator remembers logins), at least 6 per slot of
concurrency (:func:`logins_for`: 3,072 at 512; httpx 1,000), small payloads (2 KB),
``pending=2``, a poll every 1 ms (``poll_interval=0.001, poll_jitter=0``; the
hand-written loops sleep 1 ms too: with the default 10% jitter half the sleeps would be
just over 1 ms, which epoll rounds up to 2 ms). Reports logins/s, client CPU µs per HTTP
request, and the wall time per login of each contender over bare aiohttp's, paired round
by round (the contenders take turns, in a rotating order, each starting on a collected
heap: a full collection of another contender's garbage would land in a random round).
The "overhead" section repeats the ratios at concurrency 64 and 512 without httpx, over
25 rounds: a round's ratio varies by +-15% on a 2-core VM, so 9 rounds leave a median
uncertain by about 5%.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
from collections.abc import Awaitable, Callable

import aiohttp
import anyio
import msgspec

from flinks_async import FlinksClient, Investments
from flinks_async.testing import demo_login_ids

from ._common import CUSTOMER, EmulatorProcess, Stat, cpu_seconds, emulator_process, table

PENDING = 2
POLL = 0.001  # seconds between polls, for every contender
REQUESTS_PER_LOGIN = 2 + PENDING  # Authorize, then PENDING x 202 and one 200


async def _fan(ids: list[str], concurrency: int, one: Callable[[str], Awaitable[None]]) -> None:
    limiter = anyio.CapacityLimiter(concurrency)

    async def guarded(login_id: str) -> None:
        async with limiter:
            await one(login_id)

    async with anyio.create_task_group() as tg:
        for login_id in ids:
            tg.start_soon(guarded, login_id)


async def bare_aiohttp(url: str, ids: list[str], concurrency: int) -> None:
    base = f"{url}/v3/{CUSTOMER}/BankingServices"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(login_id: str) -> None:
            async with http.post(
                f"{base}/Authorize", json={"LoginId": login_id, "MostRecentCached": True}
            ) as r:
                rid = (await r.json())["RequestId"]
            while True:
                async with http.post(
                    f"{base}/Investments",
                    json={"LoginId": login_id, "RequestId": rid, "MostRecentCached": True},
                ) as r:
                    body = await r.read()
                    if r.status == 200:
                        _DECODE(body)
                        return
                del body
                await asyncio.sleep(POLL)

        await _fan(ids, concurrency, one)


async def httpx_loop(url: str, ids: list[str], concurrency: int) -> None:
    import httpx

    base = f"{url}/v3/{CUSTOMER}/BankingServices"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:

        async def one(login_id: str) -> None:
            r = await http.post(
                f"{base}/Authorize", json={"LoginId": login_id, "MostRecentCached": True}
            )
            rid = r.json()["RequestId"]
            while True:
                r = await http.post(
                    f"{base}/Investments",
                    json={"LoginId": login_id, "RequestId": rid, "MostRecentCached": True},
                )
                if r.status_code == 200:
                    _DECODE(r.content)
                    return
                await asyncio.sleep(POLL)

        await _fan(ids, concurrency, one)


async def flinks_many(url: str, ids: list[str], concurrency: int) -> None:
    async with FlinksClient(
        CUSTOMER, base_url=url, poll_interval=POLL, poll_jitter=0.0, max_connections=concurrency
    ) as client:
        async with client.investments_many(ids, concurrency=concurrency) as results:
            async for r in results:
                if not r.ok:
                    raise RuntimeError(f"unexpected failure: {r.error}")


async def flinks_direct(url: str, ids: list[str], concurrency: int) -> None:
    async with FlinksClient(
        CUSTOMER, base_url=url, poll_interval=POLL, poll_jitter=0.0, max_connections=concurrency
    ) as client:

        async def one(login_id: str) -> None:
            await client.investments(login_id)

        await _fan(ids, concurrency, one)


_DECODE = msgspec.json.Decoder(Investments, strict=False).decode

CONTENDERS = {
    "flinks-async many": flinks_many,
    "flinks-async direct": flinks_direct,
    "bare aiohttp": bare_aiohttp,
    "httpx": httpx_loop,
}
OURS = ("flinks-async many", "flinks-async direct")
LOOPS = ("asyncio", "uvloop")


@dataclasses.dataclass
class TransportResult:
    loop: str
    concurrency: int
    logins: int
    rate: dict[str, Stat]  # logins per second
    cpu_per_request: dict[str, Stat]  # client CPU seconds per HTTP request
    vs_bare: dict[str, Stat]  # wall time / bare aiohttp's wall time, paired per round


async def measure(
    emu: EmulatorProcess,
    loop: str,
    concurrency: int,
    logins: int,
    rounds: int,
    seed: int,
    contenders: tuple[str, ...] = tuple(CONTENDERS),
) -> TransportResult:
    walls: dict[str, list[float]] = {k: [] for k in contenders}  # seconds per login
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    names = list(contenders)
    for rnd in range(rounds + 1):  # round 0 warms up
        # the order rotates each round: no contender always runs first or last
        for n, name in enumerate(names[rnd % len(names) :] + names[: rnd % len(names)]):
            count = logins_for(name, concurrency, logins)
            ids = demo_login_ids(count, seed=seed * 1000 + rnd * 10 + n)
            gc.collect()  # nobody pays for the garbage of the contender before (httpx's)
            c0, t0 = cpu_seconds(), time.perf_counter()
            await CONTENDERS[name](emu.url, ids, concurrency)
            wall, used = time.perf_counter() - t0, cpu_seconds() - c0
            if rnd:
                walls[name].append(wall / count)
                cpu[name].append(used / (count * REQUESTS_PER_LOGIN))
    bare = walls["bare aiohttp"]
    return TransportResult(
        loop,
        concurrency,
        logins_for("bare aiohttp", concurrency, logins),
        {k: Stat([1 / w for w in v]) for k, v in walls.items()},
        {k: Stat(v) for k, v in cpu.items()},
        {k: Stat([w / b for w, b in zip(v, bare, strict=True)]) for k, v in walls.items()},
    )


def logins_for(contender: str, concurrency: int, logins: int) -> int:
    """Logins per round: at least 6 per slot, so that a round is mostly steady state and
    not the start-up and wind-down of ``concurrency`` connections (at 512, 1,000 logins
    were two waves); httpx keeps ``logins`` (it is 20-40x slower: its time per login is
    what the ratio compares)."""
    if contender == "httpx":
        return logins
    return max(logins, 6 * concurrency)


#: The precision pass: our two paths and the floor only, many rounds (httpx is 20-40x
#: slower, which the main table shows well enough in a few).
OVERHEAD = ("flinks-async many", "flinks-async direct", "bare aiohttp")


async def run(
    concurrencies: tuple[int, ...] = (1, 64, 512),
    logins: int = 2000,
    rounds: int = 5,
    loop: str = "asyncio",
    contenders: tuple[str, ...] = tuple(CONTENDERS),
) -> list[TransportResult]:
    out = []
    async with emulator_process("--pending", str(PENDING), "--payload-bytes", "2000") as emu:
        for i, c in enumerate(concurrencies):
            n = max(100, logins // 10) if c == 1 else logins
            out.append(await measure(emu, loop, c, n, rounds, i + 1, contenders))
    return out


def run_loops(
    concurrencies: tuple[int, ...] = (1, 64, 512),
    logins: int = 2000,
    rounds: int = 5,
    contenders: tuple[str, ...] = tuple(CONTENDERS),
) -> list[TransportResult]:
    """:func:`run` on asyncio, then on uvloop when it is installed."""
    out = anyio.run(run, concurrencies, logins, rounds, "asyncio", contenders)
    if _has_uvloop():
        out += anyio.run(
            run,
            concurrencies,
            logins,
            rounds,
            "uvloop",
            contenders,
            backend_options={"use_uvloop": True},
        )
    return out


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def markdown(results: list[TransportResult]) -> str:
    rows = []
    for r in results:
        for name in r.rate:
            ratio = r.vs_bare[name]
            rows.append(
                (
                    r.loop,
                    r.concurrency,
                    name,
                    f"{r.rate[name].median:,.0f} ({r.rate[name].min:,.0f}–{r.rate[name].max:,.0f})",
                    f"{r.cpu_per_request[name].median * 1e6:.0f}",
                    "1.00"
                    if name == "bare aiohttp"
                    else f"{ratio.median:.2f}x ({ratio.min:.2f}–{ratio.max:.2f})",
                )
            )
    return table(
        [
            "loop",
            "concurrency",
            "contender",
            "logins/s median (min–max)",
            "client CPU µs/request",
            "wall time per login vs bare aiohttp, median of paired rounds (min–max)",
        ],
        rows,
    )
