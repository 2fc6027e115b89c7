"""Cancel at every await point of the request/poll cycle: nothing leaks, the next call works."""

from __future__ import annotations

import asyncio
import collections
import gc

import anyio
import pytest

from flinks_async import FlinksClient, FlinksError
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import assert_polling_stopped, fast_client, wait_until

pytestmark = pytest.mark.anyio

#: A login's cycle with every kind of await: token + Authorize (after a 503 and a backoff
#: sleep), a slow answer, a 429 (Retry-After: 0, then backoff), polls with sleeps, a torn
#: body, the 200.
FAULTS = ["http_503@authorize", "slow:0.004@data", "rate_limit:0@data", "truncate@data"]


def _check_clean(client: FlinksClient) -> None:
    assert client.in_flight_requests == 0, "a connection was left checked out"
    assert client.active_polls == 0, "a half-registered single-flight entry was left"


async def test_cancel_delay_sweep(emu: Emulator) -> None:
    login = demo_login_ids(1, seed=90)[0]
    async with fast_client(emu, poll_interval=0.003, backoff_initial=0.003) as client:
        # how long one full cycle takes, to sweep across all of it
        emu.set_login(login, pending=3, faults=FAULTS)
        with anyio.fail_after(10):
            started = anyio.current_time()
            await client.investments(login)
            cycle = anyio.current_time() - started
        steps = 60
        cancelled_after: set[int] = set()  # requests the server had seen when we cancelled
        for i in range(steps):
            emu.set_login(login, pending=3, faults=FAULTS)
            before = emu.requests_total
            with anyio.move_on_after(cycle * i / steps) as scope:
                await client.investments(login)
            if scope.cancelled_caught:
                cancelled_after.add(emu.requests_total - before)
            _check_clean(client)
        # The sweep cancelled at many different stages of the cycle, however fast the
        # machine is (it is measured on the same machine): not a count of timings.
        assert len(cancelled_after) >= 4, cancelled_after
        await assert_polling_stopped(emu)
        emu.set_login(login, pending=1)
        assert (await client.investments(login)).accounts  # and the next call works
        _check_clean(client)
    await wait_until(lambda: emu.active == 0)


async def test_cancel_sweep_over_a_fan_out(emu: Emulator) -> None:
    ids = demo_login_ids(30, seed=91)
    async with fast_client(emu, poll_interval=0.003, backoff_initial=0.003) as client:
        for i in range(15):
            for login in ids:
                emu.set_login(login, pending=2, faults=FAULTS)
            with anyio.move_on_after(0.004 * i):
                async with client.investments_many(ids, concurrency=10) as results:
                    async for _ in results:
                        pass
            _check_clean(client)
        async with client.investments_many(ids[:5]) as results:
            assert len([r async for r in results if r.ok]) == 5


async def test_cancel_while_waiting_for_the_rate_limiter(emu: Emulator) -> None:
    ids = demo_login_ids(40, seed=92)
    async with fast_client(emu, rate_limit=20) as client:
        with anyio.move_on_after(0.3):
            async with anyio.create_task_group() as tg:
                for login in ids:
                    tg.start_soon(client.investments, login)
        _check_clean(client)
        emu.set_login(ids[0], pending=0)
        with anyio.fail_after(5):
            assert (await client.investments(ids[0])).accounts


#: What a login in flight holds: none of it may be left in a reference cycle once cancelled
#: (aiohttp's own connection objects may be: a connection the server closed keeps a cycle
#: through its ServerDisconnectedError, whatever the client does).
_A_CALLS_OBJECTS = {
    "frame",
    "coroutine",
    "Task",
    "Future",
    "Timeout",
    "Entry",  # a deadline in the client's queue (flinks_async._deadlines)
    "_Flight",
    "Plan",
    "CheckedDecoder",
}


@pytest.mark.parametrize("path", ["fan-out", "direct"])
async def test_a_cancelled_login_leaves_no_garbage_cycle(emu: Emulator, path: str) -> None:
    """What a cancelled login held is freed at once (reference counting), not left in a
    cycle for the cyclic GC (it was 74 objects per login, and 50,000 logins in flight made
    full collections of seconds). "direct": calls in plain asyncio tasks, as aiohttp.web
    runs its handlers (anyio's task groups leave a cycle of their own per cancelled task)."""
    logins = demo_login_ids(200, seed=91)
    for login in logins:
        emu.set_login(login, pending=10**6)
    # polls 5 s apart: when every login has been polled once, all are asleep
    async with fast_client(emu, poll_interval=5.0, poll_jitter=0) as client:
        await client.investments(demo_login_ids(1, seed=92)[0])  # pool and caches warm
        gc.collect()
        gc.disable()
        try:
            polled = emu.counts["Investments"] + len(logins)  # each login polled once: asleep
            with anyio.CancelScope() as scope:
                if path == "fan-out":
                    async with client.investments_many(logins, concurrency=200) as results:
                        await wait_until(lambda: emu.counts["Investments"] >= polled)
                        scope.cancel()
                        async for _ in results:
                            pass
            if path == "direct":
                tasks = [asyncio.create_task(client.investments(login)) for login in logins]
                await wait_until(lambda: emu.counts["Investments"] >= polled)
                for task in tasks:
                    task.cancel()
                await asyncio.wait(tasks)
                del tasks
            gc.set_debug(gc.DEBUG_SAVEALL)  # keep what the collection finds, to look at it
            gc.collect()
            left = collections.Counter(
                type(o).__qualname__ for o in gc.garbage if type(o).__qualname__ in _A_CALLS_OBJECTS
            )
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert not left, f"left in cycles after cancelling {len(logins)} logins: {dict(left)}"


async def test_a_cancelled_fan_out_frees_each_login_as_it_ends(emu: Emulator) -> None:
    """Cancelling a fan-out frees each login's objects as its task ends, not when the last
    one has: the garbage collector's young generation stays small while thousands of
    logins wind down (it held every login's frames, about 11 objects per login, and at
    50,000 in flight two young collections of 0.3 s each doubled the cancel's time)."""
    logins = demo_login_ids(2000, seed=93)
    for login in logins:
        emu.set_login(login, pending=10**6)
    young: list[int] = []

    def walked(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] < 2:
            young.append(sum(len(gc.get_objects(g)) for g in range(info["generation"] + 1)))

    async with fast_client(emu, poll_interval=5.0, poll_jitter=0) as client:
        polled = emu.counts["Investments"] + len(logins)  # each login polled once: asleep
        try:
            with anyio.CancelScope() as scope:
                async with client.investments_many(logins, concurrency=len(logins)) as results:
                    await wait_until(lambda: emu.counts["Investments"] >= polled, timeout=30)
                    gc.collect()
                    gc.callbacks.append(walked)
                    scope.cancel()  # the block's exit winds the logins down
                    async for _ in results:
                        pass
        finally:
            if walked in gc.callbacks:
                gc.callbacks.remove(walked)
        _check_clean(client)
    # A young collection starts once the threshold's worth of objects has been allocated
    # (700 on Python 3.11/3.12, 2,000 on 3.13); logins that kept their frames until the
    # end added about 11 objects each on top of that.
    assert young, "no young collection ran while 2,000 logins were cancelled"
    bound = gc.get_threshold()[0] + len(logins) // 2
    assert max(young) < bound, f"young generation walked: {max(young)} objects"


#: A login that fails, or whose request is retried: what it held must not be left in a cycle.
_AN_ERRORS_OBJECTS = _A_CALLS_OBJECTS | {"traceback", "Result", "ClientResponse", "StreamReader"}


@pytest.mark.parametrize("path", ["fan-out", "direct"])
@pytest.mark.parametrize(
    "faults",
    [["truncate@data"], ["http_503@authorize", "http_500@data"], ["http_500@data"] * 5],
    ids=["torn-body-retried", "errors-retried", "failed"],
)
async def test_a_retried_or_failed_login_leaves_no_garbage_cycle(
    emu: Emulator, path: str, faults: list[str]
) -> None:
    """An error's traceback holds the frames it passed through; when those frames still
    hold the error (or the Result carrying it), the login's objects stay in a cycle. A retry
    waits out its backoff for seconds, long enough for such a cycle to reach the oldest
    generation, which only a full collection walks."""
    logins = demo_login_ids(40, seed=94)
    for login in logins:
        emu.set_login(login, pending=1, faults=faults)
    async with fast_client(emu, max_retries=2) as client:
        await client.investments(demo_login_ids(1, seed=92)[0])  # pool and caches warm
        gc.collect()
        gc.disable()
        try:
            outcomes: list[bool] = []
            if path == "fan-out":
                async with client.investments_many(logins, concurrency=10) as results:
                    outcomes = [r.ok async for r in results]
            else:
                for login in logins:
                    try:
                        outcomes.append(bool(await client.investments(login)))
                    except FlinksError:
                        outcomes.append(False)
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            left = collections.Counter(
                type(o).__qualname__
                for o in gc.garbage
                if type(o).__qualname__ in _AN_ERRORS_OBJECTS or isinstance(o, BaseException)
            )
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert len(outcomes) == len(logins)
    assert all(outcomes) == (faults != ["http_500@data"] * 5)  # the last fails every login
    assert not left, f"left in cycles by {len(logins)} logins: {dict(left)}"
