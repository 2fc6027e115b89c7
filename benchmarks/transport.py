"""Transport overhead: the full Authorize + poll-until-200 loop for many logins.

Three contenders, the same work, the same emulator process (on its own core):

* ``flinks-async``: ``client.investments_many(ids, concurrency=C, raw=True)``;
* ``bare aiohttp``: the floor, a hand-written loop with one ``aiohttp.ClientSession``
  (POST Authorize, POST Investments until 200, sleep between, read the body); no retries,
  no error mapping, no validation;
* ``httpx``: the same loop with ``httpx.AsyncClient`` (what most SDKs use).

Each round pulls fresh logins (the emulator remembers logins), small payloads (2 KB),
``pending=2``, ``poll_interval=1e-6`` (the client requires > 0; the bare loops poll back to
back, so the timer is counted against flinks-async). Reports logins/s and client CPU µs per
HTTP request.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable

import aiohttp
import anyio
import anyio.lowlevel

from flinks_async import FlinksClient
from flinks_async.testing import demo_login_ids

from ._common import CUSTOMER, EmulatorProcess, Stat, cpu_seconds, emulator_process, table

PENDING = 2
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
                        return
                del body
                await anyio.lowlevel.checkpoint()

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
                    return
                await anyio.lowlevel.checkpoint()

        await _fan(ids, concurrency, one)


async def flinks_async(url: str, ids: list[str], concurrency: int) -> None:
    async with FlinksClient(
        CUSTOMER, base_url=url, poll_interval=1e-6, max_connections=concurrency
    ) as client:
        async with client.investments_many(ids, concurrency=concurrency, raw=True) as results:
            async for r in results:
                if not r.ok:
                    raise RuntimeError(f"unexpected failure: {r.error}")


CONTENDERS = {"flinks-async": flinks_async, "bare aiohttp": bare_aiohttp, "httpx": httpx_loop}


@dataclasses.dataclass
class TransportResult:
    concurrency: int
    logins: int
    rate: dict[str, Stat]  # logins per second
    cpu_per_request: dict[str, Stat]  # client CPU seconds per HTTP request


async def measure(
    emu: EmulatorProcess, concurrency: int, logins: int, rounds: int, seed: int
) -> TransportResult:
    rate: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    cpu: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    for rnd in range(rounds + 1):  # round 0 warms up
        for n, (name, fn) in enumerate(CONTENDERS.items()):
            ids = demo_login_ids(logins, seed=seed * 1000 + rnd * 10 + n)
            c0, t0 = cpu_seconds(), time.perf_counter()
            await fn(emu.url, ids, concurrency)
            wall, used = time.perf_counter() - t0, cpu_seconds() - c0
            if rnd:
                rate[name].append(logins / wall)
                cpu[name].append(used / (logins * REQUESTS_PER_LOGIN))
    return TransportResult(
        concurrency,
        logins,
        {k: Stat(v) for k, v in rate.items()},
        {k: Stat(v) for k, v in cpu.items()},
    )


async def run(
    concurrencies: tuple[int, ...] = (1, 64, 512), logins: int = 2000, rounds: int = 5
) -> list[TransportResult]:
    out = []
    async with emulator_process("--pending", str(PENDING), "--payload-bytes", "2000") as emu:
        for i, c in enumerate(concurrencies):
            n = max(50, logins // 10) if c == 1 else logins
            out.append(await measure(emu, c, n, rounds, seed=i + 1))
    return out


def markdown(results: list[TransportResult]) -> str:
    rows = []
    for r in results:
        ours = r.rate["flinks-async"].median
        for name in CONTENDERS:
            rows.append(
                (
                    r.concurrency,
                    name,
                    f"{r.rate[name].median:,.0f} ({r.rate[name].min:,.0f}–{r.rate[name].max:,.0f})",
                    f"{r.cpu_per_request[name].median * 1e6:.0f}",
                    "1.00" if name == "flinks-async" else f"{ours / r.rate[name].median:.2f}x",
                )
            )
    return table(
        [
            "concurrency",
            "contender",
            "logins/s median (min–max)",
            "client CPU µs/request",
            "flinks-async vs this",
        ],
        rows,
    )
