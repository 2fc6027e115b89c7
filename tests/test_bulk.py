"""Fan-out: exactly one result per login, bounds, back-pressure, cancellation, rate limit."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from flinks_async import (
    AccessDeniedError,
    ClientClosedError,
    ConfigurationError,
    Event,
    FlinksClient,
    FlinksError,
    InvalidLoginIdError,
    Investments,
    LoginError,
    Result,
    SetupError,
)
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import assert_polling_stopped, fast_client, wait_until

pytestmark = pytest.mark.anyio


def client_side_tasks() -> int:
    """Tasks in the loop, less the in-process emulator's (aiohttp's server runs a task per
    connection and, in recent versions, one per request being handled)."""
    return sum(
        not getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler.")
        for t in asyncio.all_tasks()
    )


async def collect(client: FlinksClient, ids: object, **options: object) -> list[Result[object]]:
    out: list[Result[object]] = []
    async with client.investments_many(ids, **options) as results:  # type: ignore[call-overload]
        async for r in results:
            out.append(r)
    return out


async def drain(
    client: FlinksClient,
    ids: Iterable[str] | AsyncIterable[str],
    into: list[Result[Investments]],
    **options: Any,
) -> None:
    """Pull ``ids`` into ``into`` (which keeps what arrived if the fan-out raises)."""
    async with client.investments_many(ids, **options) as results:
        async for r in results:
            into.append(r)


async def test_every_login_ends_in_exactly_one_result(emu: Emulator) -> None:
    ids = demo_login_ids(300, seed=3)
    for i in ids[:10]:
        emu.set_login(i, faults=["INVALID_LOGIN@data"])
    for i in ids[10:40]:
        emu.set_login(i, faults=["http_503", "reset@data"])
    events: list[Event] = []
    async with fast_client(emu, max_connections=100) as client:
        results = await collect(client, ids, concurrency=25, on_event=events.append)
        assert client.in_flight_requests == 0 and client.active_polls == 0
    assert sorted(r.login_id for r in results) == sorted(ids)
    failed = {r.login_id for r in results if not r.ok}
    assert failed == set(ids[:10])
    assert all(isinstance(r.error, LoginError) for r in results if not r.ok)
    assert all(isinstance(r.value, Investments) and r.value.accounts for r in results if r.ok)
    assert sum(e.kind == "started" for e in events) == 300
    assert sum(e.kind == "done" for e in events) == 300
    assert sum(e.kind == "retry" for e in events) >= 60
    # never more logins in flight than asked, never more sockets than that
    in_flight = peak = 0
    for e in events:
        in_flight += {"started": 1, "done": -1}.get(e.kind, 0)
        peak = max(peak, in_flight)
    assert peak <= 25
    assert emu.peak_connections <= 25


async def test_ids_are_read_lazily_from_an_endless_iterator(client: FlinksClient) -> None:
    taken = 0

    def endless() -> Iterator[str]:
        nonlocal taken
        for n in itertools.count():
            taken += 1
            yield f"{n:08x}-0000-4000-8000-000000000000"

    got = 0
    # leaving must stop the feed: a free slot must not keep it starting workers forever
    with anyio.fail_after(10):
        async with client.investments_many(endless(), concurrency=5) as results:
            async for _ in results:
                got += 1
                if got == 20:
                    break
    assert taken < 40
    assert client.in_flight_requests == 0


async def test_async_iterable_input(client: FlinksClient) -> None:
    ids = demo_login_ids(12, seed=5)

    async def source() -> AsyncIterator[str]:
        for i in ids:
            await anyio.lowlevel.checkpoint()
            yield i

    results = await collect(client, source(), concurrency=4)
    assert sorted(r.login_id for r in results) == sorted(ids)


async def test_slow_consumer_applies_back_pressure(emu: Emulator) -> None:
    ids = demo_login_ids(100, seed=9)
    events: list[Event] = []
    async with fast_client(emu) as client:
        async with client.investments_many(ids, concurrency=5, on_event=events.append) as rs:
            await wait_until(lambda: sum(e.kind == "done" for e in events) >= 10)
            await anyio.sleep(0.1)  # give a runaway producer time to show itself
            started = sum(e.kind == "started" for e in events)
            assert started <= 10  # 5 results buffered + 5 logins holding their slots
            n = 0
            async for _ in rs:
                n += 1
        assert n == 100


async def test_breaking_out_cancels_everything_at_once(emu: Emulator) -> None:
    ids = demo_login_ids(50, seed=11)
    for i in ids:
        emu.set_login(i, faults=["never_ready"])
    emu.set_login(ids[0], pending=0)
    baseline = client_side_tasks()
    async with fast_client(emu) as client:
        async with client.investments_many(ids, concurrency=20) as results:
            async for r in results:
                assert r.ok
                break
        assert client.in_flight_requests == 0 and client.active_polls == 0
        assert client_side_tasks() == baseline
        await assert_polling_stopped(emu)
        assert (await client.investments(ids[0])).accounts  # and the client still works


async def test_cancelling_the_consumer_cancels_the_fan_out(emu: Emulator) -> None:
    ids = demo_login_ids(30, seed=12)
    for i in ids:
        emu.set_login(i, faults=["never_ready"])
    async with fast_client(emu) as client:
        with anyio.move_on_after(0.2):
            await collect(client, ids, concurrency=30)
        assert client.in_flight_requests == 0 and client.active_polls == 0
    await wait_until(lambda: emu.active == 0)


async def test_an_exception_in_the_body_propagates_bare(client: FlinksClient) -> None:
    async def consume() -> None:
        async with client.investments_many(demo_login_ids(5)) as results:
            async for _ in results:
                raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await consume()
    assert client.in_flight_requests == 0


async def test_fail_fast_raises_the_first_failure_and_stops(emu: Emulator) -> None:
    ids = demo_login_ids(40, seed=13)
    for i in ids[1:]:
        emu.set_login(i, faults=["never_ready"])
    emu.set_login(ids[0], faults=["DISABLED_LOGIN@authorize"])
    async with fast_client(emu) as client:
        with pytest.raises(LoginError):
            await collect(client, ids, concurrency=40, fail_fast=True)
        assert client.in_flight_requests == 0 and client.active_polls == 0


async def test_duplicates_are_pulled_once(emu: Emulator) -> None:
    ids = demo_login_ids(5, seed=14)
    dup = [*ids, ids[0].upper(), ids[1], ids[1]]
    async with fast_client(emu) as client:
        results = await collect(client, dup)
        assert sorted(r.login_id for r in results) == sorted(ids)
        assert emu.counts["Authorize"] == 5
        # dedupe=False: one result per occurrence; concurrent ones share one poll
        everything = await collect(client, [ids[2]] * 4, dedupe=False, concurrency=4)
        assert len(everything) == 4 and all(r.ok for r in everything)
        assert emu.counts["Authorize"] == 6


async def test_malformed_ids_become_typed_results(client: FlinksClient, emu: Emulator) -> None:
    results = await collect(client, ["nope", demo_login_ids(1)[0]])
    bad = next(r for r in results if r.login_id == "nope")
    assert isinstance(bad.error, InvalidLoginIdError) and isinstance(bad.error, FlinksError)
    assert sum(r.ok for r in results) == 1


async def test_every_endpoint_has_a_fan_out(client: FlinksClient) -> None:
    ids = demo_login_ids(3, seed=15)
    for name in ("accounts_detail_many", "accounts_summary_many", "statements_many"):
        async with getattr(client, name)(ids, concurrency=3) as results:
            assert len([r async for r in results if r.ok]) == 3
    async with client.many("accounts-detail", ids, days_of_transactions="Days365") as results:
        assert len([r async for r in results if r.ok]) == 3


async def test_rate_limit_holds_across_the_whole_client(emu: Emulator) -> None:
    ids = demo_login_ids(60, seed=16)
    async with fast_client(emu, rate_limit=100, poll_interval=0.001) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, client, ids[:50])
            for i in ids[50:]:  # single calls share the same budget
                tg.start_soon(client.investments, i)
    assert emu.requests_total >= 300
    assert emu.max_requests_in_window(1.0) <= 100  # as the server counted them


async def test_closing_the_client_stops_the_fan_out_with_one_typed_error(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """aclose() from another task during a fan-out over an endless source: one
    ClientClosedError from the `async for`, promptly, and no ERROR per login."""
    endless = (f"{i:08x}-0000-4000-8000-000000000000" for i in itertools.count())
    client = fast_client(emu, poll_interval=0.01)
    delivered: list[Result[Investments]] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def close_soon() -> None:
                await wait_until(lambda: emu.requests_total > 50)
                await client.aclose()

            tg.start_soon(close_soon)
            with pytest.raises(ClientClosedError):
                await drain(client, endless, delivered, concurrency=20)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert client_side_tasks() <= 2  # this test and the loop's own


async def test_options_are_checked_before_any_login_starts(
    client: FlinksClient, emu: Emulator
) -> None:
    ids = demo_login_ids(5, seed=21)
    with pytest.raises(ConfigurationError, match="'bogus'"):
        client.many("investments", ids, bogus=1)
    with pytest.raises(ConfigurationError, match="investments does not take 'with_balance'"):
        client.many("investments", ids, with_balance=True)  # another endpoint's option
    with pytest.raises(ConfigurationError, match="'number_of_statements'"):
        client.many("accounts-summary", ids, number_of_statements="Months3")
    for concurrency in (0, -1, 1.5):
        with pytest.raises(ConfigurationError, match="concurrency"):
            client.many("investments", ids, concurrency=concurrency)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="dedupe"):
        client.many("investments", ids, dedupe="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown endpoint"):
        client.many("nope", ids)
    assert emu.requests_total == 0


async def test_an_async_source_is_closed_when_the_consumer_breaks(client: FlinksClient) -> None:
    closed = anyio.Event()

    async def source() -> AsyncIterator[str]:
        try:
            for login in demo_login_ids(50, seed=22):
                yield login
        finally:
            closed.set()

    async with client.investments_many(source(), concurrency=5) as results:
        async for _ in results:
            break
    assert closed.is_set()  # at block exit, not at garbage collection


async def test_a_failing_source_surfaces_bare_after_the_results_in_flight(
    client: FlinksClient,
) -> None:
    ids = demo_login_ids(8, seed=23)

    def source() -> Iterator[str]:
        yield from ids
        raise OSError("the id database went away")

    got: list[Result[Investments]] = []
    with pytest.raises(OSError, match="went away"):
        await drain(client, source(), got, concurrency=8)
    assert sorted(r.login_id for r in got) == sorted(ids)  # none dropped
    assert all(r.ok for r in got)


async def test_dedupe_in_flight_holds_only_the_ids_in_flight(emu: Emulator) -> None:
    ids = demo_login_ids(3, seed=24)
    emu.pending = 0
    async with fast_client(emu) as client:
        # a; A while a is in flight (skipped); a again once it finished (pulled); b
        async def source() -> AsyncIterator[str]:
            yield ids[0]
            yield ids[0].upper()  # in flight: skipped
            await wait_until(lambda: emu.statuses[200] >= 3)  # token, Authorize, data
            yield ids[0]  # finished: pulled again
            yield ids[1]

        got = await collect(client, source(), dedupe="in-flight", concurrency=4)
    assert sorted(r.login_id for r in got) == sorted([ids[0], ids[0], ids[1]])
    assert emu.counts["Authorize"] == 3


async def test_a_wrong_key_ends_the_fan_out_with_one_typed_error(
    emu: Emulator, login_ids: list[str]
) -> None:
    """many() with a wrong API key: SetupError from the async for, once; the logins not
    yet started never send anything."""
    ids = demo_login_ids(400, seed=77)
    seen: list[Result[Any]] = []

    async def pull(client: FlinksClient) -> None:
        async with client.many("accounts-detail", ids, concurrency=20) as results:
            async for r in results:
                seen.append(r)

    async with fast_client(emu, api_key="wrong-key-0000") as client:
        with pytest.raises(SetupError) as info:
            await pull(client)
        with pytest.raises(SetupError):  # the client stays stopped, sending nothing
            await client.accounts_detail(ids[-1])
    assert "check api_key" in str(info.value) and "wrong-key-0000" not in str(info.value)
    assert info.value.http_status == 401 and info.value.flinks_code == "UNAUTHORIZED"
    assert isinstance(info.value, AccessDeniedError)  # as each such answer was before
    assert len(seen) <= 2 and all(isinstance(r.error, AccessDeniedError) for r in seen)
    # token, Authorize, data call of the 20 in flight and of the logins that took the slots
    # of those that failed before the breaker tripped (one per result seen)
    assert emu.requests_total <= 3 * (20 + len(seen)), emu.counts


async def test_an_endpoint_that_has_answered_is_never_judged_a_set_up_error(
    emu: Emulator, login_ids: list[str]
) -> None:
    """UNAUTHORIZED is also Flinks' answer for a card the institution did not authorize:
    once the endpoint has answered this client, every login keeps its own result."""
    ok, refused = login_ids[0], login_ids[1:8]
    for one in refused:
        emu.set_login(one, pending=0, faults=["UNAUTHORIZED@data"])
    async with fast_client(emu) as client:
        await client.accounts_detail(ok)
        async with client.many("accounts-detail", refused, concurrency=7) as results:
            ended = [r async for r in results]
    assert len(ended) == 7
    assert all(isinstance(r.error, AccessDeniedError) for r in ended)
    assert not any(isinstance(r.error, SetupError) for r in ended)


async def test_the_set_up_breaker_can_be_turned_off(emu: Emulator, login_ids: list[str]) -> None:
    async with (
        fast_client(emu, api_key="wrong-key-0000", stop_on_setup_error=False) as client,
        client.many("accounts-detail", login_ids[:6], concurrency=6) as results,
    ):
        ended = [r async for r in results]
    assert len(ended) == 6 and all(isinstance(r.error, AccessDeniedError) for r in ended)
