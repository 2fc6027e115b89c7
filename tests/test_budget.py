"""The client-wide budget for bodies in flight (flinks_async._budget): its rules, and the
peak memory of a real fan-out of big answers, measured in a child process."""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
import textwrap

import anyio
import pytest

from flinks_async import ConfigurationError, FlinksClient
from flinks_async._budget import BodyBudget
from flinks_async.testing import Emulator, accounts_payload, demo_login_ids

from .conftest import API_KEY, CUSTOMER, SECRET

pytestmark = pytest.mark.anyio

MB = 1_000_000


async def test_bodies_that_do_not_fit_wait_in_line() -> None:
    budget = BodyBudget(10)
    assert budget.try_take(6)
    order: list[str] = []

    async def body(name: str, size: int) -> None:
        await budget.take(size)
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(body, "b", 5)  # does not fit next to 6
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(body, "c", 1)  # fits, but b is first in line
        await anyio.wait_all_tasks_blocked()
        assert order == [] and budget.used == 6
        budget.give(6)
    assert order == ["b", "c"] and budget.used == 6


async def test_when_every_holder_waits_the_oldest_goes_ahead() -> None:
    """Two unknown-length bodies holding the whole budget between them, both wanting more:
    waiting would never end, so the first waiter overshoots (by one body at most)."""
    budget = BodyBudget(10)
    assert budget.try_take(5) and budget.try_take(5)  # a and b hold 5 each, reading on
    done: list[str] = []

    async def more(name: str, held: int) -> None:
        await budget.take(4, held)
        done.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(more, "a", 5)  # b is still reading: a waits
        await anyio.wait_all_tasks_blocked()
        assert done == []
        tg.start_soon(more, "b", 5)  # now every holder waits: b may not wait behind a
        await anyio.wait_all_tasks_blocked()
        assert done == ["b"] and budget.used == 14
        budget.give(9)  # b decoded and gave back its 9
    assert done == ["b", "a"] and budget.used == 9


async def test_a_cancelled_waiter_holds_nothing() -> None:
    budget = BodyBudget(10)
    assert budget.try_take(8)
    with anyio.move_on_after(0.05):
        await budget.take(5)
    assert budget.used == 8 and not budget._waiters
    budget.give(8)
    assert budget.used == 0
    assert budget.try_take(10)


async def test_a_waiter_granted_as_it_is_cancelled_hands_its_share_on() -> None:
    budget = BodyBudget(10)
    assert budget.try_take(10)
    waiter = asyncio.ensure_future(budget.take(10))
    await asyncio.sleep(0)
    budget.give(10)  # granted...
    waiter.cancel()  # ...and cancelled before it ran
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.used == 0


def test_the_budget_must_hold_the_largest_body() -> None:
    with pytest.raises(ConfigurationError, match="raise both together"):
        FlinksClient(CUSTOMER, max_response_bytes=2 * MB, max_body_bytes_in_flight=MB)


CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, tracemalloc
    from flinks_async import FlinksClient

    tracemalloc.start()

    async def main(url, ids, budget):
        async with FlinksClient(
            sys.argv[4], base_url=url, api_key=sys.argv[5], secret_key=sys.argv[6],
            poll_interval=0.005, max_response_bytes=20_000_000,
            max_body_bytes_in_flight=budget,
        ) as client:
            ok = 0
            async with client.many(
                "accounts-detail", ids, concurrency=len(ids), raw=True
            ) as results:
                async for result in results:
                    ok += result.ok
        print(json.dumps({"ok": ok, "peak": tracemalloc.get_traced_memory()[1]}))

    asyncio.run(main(sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])))
    """
)


async def test_a_fan_out_of_big_answers_holds_at_most_the_budget(tmp_path: pathlib.Path) -> None:
    """12 answers of 16 MB at concurrency 12, in a child process: with a budget of two
    bodies, the most memory Python held at once (tracemalloc's peak: what the budget bounds;
    RSS adds the allocator's own keeping, see docs/performance.md) stays under 100 MB, and
    under half of the same pull with room for all twelve."""
    ids = demo_login_ids(12, seed=23)
    body = accounts_payload(16 * MB)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    peaks = {}
    async with Emulator(pending=0) as emu:
        for login in ids:
            emu.set_login(login, pending=0, payloads={"GetAccountsDetail": body})
        for budget in (400 * MB, 34 * MB):
            done = await anyio.run_process(
                [
                    sys.executable,
                    str(script),
                    emu.url,
                    ",".join(ids),
                    str(budget),
                    CUSTOMER,
                    API_KEY,
                    SECRET,
                ],
                check=False,
            )
            assert done.returncode == 0, done.stderr.decode()
            report = json.loads(done.stdout)
            assert report["ok"] == 12
            peaks[budget] = report["peak"]
    # a body is held twice for a moment as it is read (aiohttp's chunks, then the bytes)
    assert peaks[34 * MB] < 100 * MB and peaks[34 * MB] < peaks[400 * MB] / 2, peaks
