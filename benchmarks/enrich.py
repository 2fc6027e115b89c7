"""Enrich's chain against the same three calls made by hand (#33).

For ``logins`` logins, ``concurrency`` at a time, against the in-process emulator (its
default two ``202``s per step, ``poll_interval`` 10 ms for both contenders):

* ``client.income_attributes_many(ids)``: the chain as one call per login (Authorize ->
  ``GetAccountsDetail`` polled to its 200 -> ``GetIncomeAttributes`` polled to its 200);
* by hand with the existing client: ``authorize()``, then ``accounts_detail(...,
  request_id=)``, then ``income_attributes(..., request_id=)`` (the attributes call given
  a session runs no chain).

Reported: requests per login as the emulator counts them, and wall time per login
(elapsed / logins; median of the rounds). Both do the same exchanges: the figures show
the chain costs no extra request and no extra time.
"""

from __future__ import annotations

import dataclasses
import time

import anyio

from flinks_async import FlinksClient
from flinks_async.testing import Emulator, demo_login_ids

from ._common import CUSTOMER, Stat, table

CONTENDERS = ("income_attributes (the chain)", "three calls by hand")


@dataclasses.dataclass
class EnrichResult:
    logins: int
    concurrency: int
    requests_per_login: dict[str, float]
    wall_per_login: dict[str, Stat]


async def _chain(client: FlinksClient, ids: list[str], concurrency: int) -> None:
    async with client.income_attributes_many(ids, concurrency=concurrency) as results:
        async for r in results:
            assert r.ok, r.error


async def _by_hand(client: FlinksClient, ids: list[str], concurrency: int) -> None:
    limit = anyio.Semaphore(concurrency)

    async def one(login_id: str) -> None:
        async with limit:
            auth = await client.authorize(login_id)
            await client.accounts_detail(login_id, request_id=auth.request_id)
            await client.income_attributes(login_id, request_id=auth.request_id)

    async with anyio.create_task_group() as tg:
        for login_id in ids:
            tg.start_soon(one, login_id)


async def run(logins: int = 500, concurrency: int = 50, rounds: int = 5) -> EnrichResult:
    requests: dict[str, float] = {}
    walls: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for n in range(rounds):
        for name, contender in zip(CONTENDERS, (_chain, _by_hand), strict=True):
            ids = demo_login_ids(logins, seed=3300 + n)
            async with Emulator(pending=2) as emu:
                async with FlinksClient(CUSTOMER, base_url=emu.url, poll_interval=0.01) as client:
                    started = time.perf_counter()
                    await contender(client, ids, concurrency)
                    walls[name].append((time.perf_counter() - started) / logins)
                requests[name] = emu.requests_total / logins
    return EnrichResult(logins, concurrency, requests, {k: Stat(v) for k, v in walls.items()})


def markdown(result: EnrichResult) -> str:
    rows = [
        (
            name,
            f"{result.requests_per_login[name]:.2f}",
            f"{result.wall_per_login[name].median * 1e3:.2f} ms",
        )
        for name in CONTENDERS
    ]
    head = (
        f"{result.logins} logins, {result.concurrency} at a time, two 202s per step, "
        "10 ms polls, in-process emulator; wall time per login is elapsed / logins "
        f"(median of {len(result.wall_per_login[CONTENDERS[0]].values)} rounds)."
    )
    return head + "\n\n" + table(("contender", "requests per login", "wall per login"), rows)
