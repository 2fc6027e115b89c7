"""Single-flight: concurrent callers of one login share one Authorize and one poll."""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest

from flinks_async import FlinksClient, Investments, LoginError, PollTimeoutError
from flinks_async._singleflight import SingleFlight
from flinks_async.testing import Emulator

from .conftest import assert_polling_stopped, fast_client, wait_until

pytestmark = pytest.mark.anyio


async def test_concurrent_callers_share_one_poll(emu: Emulator, login: str) -> None:
    emu.set_login(login, pending=3)
    got: list[Investments] = []
    async with fast_client(emu) as client:

        async def one() -> None:
            got.append(await client.investments(login))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one)
        assert client.active_polls == 0
    assert len(got) == 10 and all(g is got[0] for g in got)
    assert emu.counts["Authorize"] == 1
    assert emu.counts["Investments"] == 4


async def test_different_options_do_not_share(
    client: FlinksClient, emu: Emulator, login: str
) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.investments, login)
        tg.start_soon(lambda: client.investments(login, raw=True))
    assert emu.counts["Authorize"] == 2


async def test_errors_are_shared_too(client: FlinksClient, emu: Emulator, login: str) -> None:
    emu.set_login(login, faults=["INVALID_LOGIN@data"])
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await client.investments(login)
        except LoginError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
    assert len(errors) == 3 and emu.counts["Authorize"] == 1


async def test_a_cancelled_caller_leaves_the_poll_to_the_others(emu: Emulator, login: str) -> None:
    emu.set_login(login, pending=20)
    async with fast_client(emu, poll_interval=0.01) as client:
        result: list[Investments] = []

        async def patient() -> None:
            result.append(await client.investments(login))

        async with anyio.create_task_group() as tg:
            tg.start_soon(patient)
            with anyio.move_on_after(0.05):
                await client.investments(login)  # this caller gives up early
            assert client.active_polls == 1
        assert result and result[0].accounts
    assert emu.counts["Authorize"] == 1


async def test_the_poll_stops_when_its_last_caller_leaves(emu: Emulator, login: str) -> None:
    emu.set_login(login, faults=["never_ready"])
    async with fast_client(emu, poll_interval=0.01) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(client.investments, login)
            await wait_until(lambda: emu.counts["Investments"] >= 3)
            tg.cancel_scope.cancel()
        assert client.active_polls == 0 and client.in_flight_requests == 0
        await assert_polling_stopped(emu)
        emu.set_login(login, pending=0)
        assert (await client.investments(login)).accounts  # a fresh flight works


async def test_a_single_call_joins_a_bulk_pull(emu: Emulator, login_ids: list[str]) -> None:
    emu.set_login(login_ids[0], pending=10)
    async with fast_client(emu, poll_interval=0.01) as client:
        async with (
            client.investments_many(login_ids[:5]) as results,
            anyio.create_task_group() as tg,
        ):
            await wait_until(lambda: emu.counts["Investments"] >= 3)
            tg.start_soon(client.investments, login_ids[0])  # e.g. a web request
            assert len([r async for r in results]) == 5
    assert emu.counts["Authorize"] == 5


async def test_closing_the_client_cancels_shared_polls(emu: Emulator, login: str) -> None:
    emu.set_login(login, faults=["never_ready"])
    client = fast_client(emu, poll_interval=0.01)
    errors: list[Exception] = []

    async def caller() -> None:
        try:
            await client.investments(login)
        except RuntimeError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await wait_until(lambda: client.active_polls == 1)
        await client.aclose()
    assert client.active_polls == 0 and client.in_flight_requests == 0
    assert len(errors) == 1 and "closed" in str(errors[0])


async def test_the_entry_is_gone_when_the_last_caller_returns() -> None:
    """The race CI found: the run finishes in the same loop turn its last caller is
    cancelled. When that caller's code continues, the entry must already be gone, and a
    new call must start a new run rather than join the finished one."""
    flights = SingleFlight()
    release = asyncio.Event()
    runs = 0

    async def work() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        return runs

    async def caller() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await flights.run("key", work)
        assert len(flights) == 0  # in the same task, before yielding to the loop
        release.clear()
        async with anyio.create_task_group() as tg:
            tg.start_soon(flights.run, "key", work)
            await wait_until(lambda: runs == 2)  # a new run, not the finished one
            release.set()

    scopes: list[anyio.CancelScope] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await wait_until(lambda: runs == 1)
        release.set()  # the run becomes ready to finish...
        scopes[0].cancel()  # ...in the same turn as its only caller is cancelled
    assert len(flights) == 0


async def test_a_caller_arriving_during_teardown_gets_a_run_of_its_own() -> None:
    """The last waiter leaves and the run takes a few loop turns to wind down (as closing
    a connection does); a caller arriving meanwhile must not join the dying run (it got
    "the FlinksClient was closed" on an open client)."""
    flights = SingleFlight()
    started = anyio.Event()

    async def work() -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                for _ in range(5):  # the teardown takes several loop turns
                    await asyncio.sleep(0)
        return "never"

    async def fresh() -> str:
        return "fresh"

    first = asyncio.ensure_future(flights.run("k", work))
    await started.wait()
    first.cancel()
    await asyncio.sleep(0)  # the first caller is now awaiting the run's teardown
    assert await flights.run("k", fresh) == "fresh"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(flights) == 0


async def test_callers_started_apart_each_give_up_at_their_own_deadline(
    emu: Emulator, login: str
) -> None:
    """Three callers of one client ask for a login that never finishes (poll_timeout=1),
    started 0.3 s apart: they share one Authorize and one RequestId, the polling goes on
    after the first gives up, and each gets PollTimeoutError at its own deadline with its
    own figures (before: the later ones got the first one's error, 0.3 and 0.6 s early)."""
    emu.set_login(login, faults=["never_ready"])
    timeout = 1.0
    ended: list[tuple[float, PollTimeoutError]] = []
    async with fast_client(emu, poll_interval=0.02, poll_timeout=timeout) as client:

        async def one() -> None:
            started = time.monotonic()
            with pytest.raises(PollTimeoutError) as caught:
                await client.investments(login)
            ended.append((time.monotonic() - started, caught.value))

        async with anyio.create_task_group() as tg:
            for i in range(3):
                if i:
                    await anyio.sleep(0.3)  # the subject: calls that start apart
                tg.start_soon(one)
        assert client.active_polls == 0
        await assert_polling_stopped(emu)
    assert emu.counts["Authorize"] == 1
    data = [r for r in emu.requests if r.endpoint == "Investments"]
    assert len({r.request_id for r in data}) == 1
    assert data[-1].received_at - data[0].received_at > timeout + 0.3  # polled on
    for elapsed, err in ended:
        assert timeout - 0.05 <= elapsed < timeout + 5.0, ended
        assert timeout - 0.05 <= err.elapsed <= elapsed + 0.01, ended
        assert f"after {err.elapsed:.1f}s" in str(err), ended
        assert err.request_id == data[0].request_id and err.login_id == login
