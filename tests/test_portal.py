"""The blocking client's event loop (``_portal.LoopThread``): which thread runs it.

Seen from outside: event hooks run in the thread running the loop, and the emulator
counts what reached it. A lone caller runs the loop itself (no thread handover); a call
made meanwhile is handed to the thread running it; when the leading call ends first, the
loop's own thread carries the others to their end; a fan-out's block keeps the loop
running while its caller is busy between results.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flinks_async import ClientClosedError, Event, Investments
from flinks_async._portal import LoopThread
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import fast_sync_client
from .test_blocking import CLIENT, loop_threads, quiet, run_script, wait_for


def hook_threads() -> tuple[list[tuple[str | None, str, str]], object]:
    """A hook noting, for each ``done`` event, its login and the name of the thread it
    ran in; the list it fills."""
    seen: list[tuple[str | None, str, str]] = []

    def hook(event: Event) -> None:
        if event.kind in ("done", "pending"):
            seen.append((event.login_id, event.kind, threading.current_thread().name))

    return seen, hook


def answered(emu: Emulator, login_id: str) -> int:
    """200s the emulator sent for ``login_id``'s data."""
    return sum(
        1
        for r in list(emu.requests)
        if r.login_id == login_id and r.endpoint == "Investments" and r.status == 200
    )


def test_a_lone_caller_runs_the_loop_in_its_own_thread(emu_thread: Emulator) -> None:
    login, other = demo_login_ids(2, seed=360)
    emu_thread.set_login(login, pending=2)
    seen, hook = hook_threads()
    with fast_sync_client(emu_thread, event_hooks=[hook]) as client:
        assert isinstance(client.investments(login), Investments)
        with ThreadPoolExecutor(1, thread_name_prefix="caller") as pool:
            assert isinstance(pool.submit(client.investments, other).result(), Investments)
    me = threading.current_thread().name
    assert [t for (lid, _, t) in seen if lid == login] == [me, me, me]  # 2 pending, done
    assert {t for (lid, _, t) in seen if lid == other} == {"caller_0"}
    assert answered(emu_thread, login) == answered(emu_thread, other) == 1


def test_the_loop_thread_carries_calls_on_when_the_leading_call_ends(
    emu_thread: Emulator,
) -> None:
    first, second = demo_login_ids(2, seed=361)
    emu_thread.set_login(first, pending=100)  # >= 0.5 s of 5 ms polls: time to join
    emu_thread.set_login(second, pending=300)
    seen, hook = hook_threads()
    leader = ThreadPoolExecutor(1, thread_name_prefix="leader")
    follower = ThreadPoolExecutor(1, thread_name_prefix="follower")
    # the client closes first: a stranded call would end, and its thread with it
    with leader, follower, fast_sync_client(emu_thread, event_hooks=[hook]) as client:
        leading = leader.submit(client.investments, first)
        wait_for(lambda: any(lid == first for (lid, _, _) in seen))  # it leads
        following = follower.submit(client.investments, second)  # handed over
        assert isinstance(leading.result(timeout=60), Investments)
        assert isinstance(following.result(timeout=60), Investments)  # not stranded
    assert {t for (lid, _, t) in seen if lid == first} == {"leader_0"}
    threads = [t for (lid, _, t) in seen if lid == second]
    assert threads[0] == "leader_0" and threads[-1] == "flinks-async-loop"
    assert "follower_0" not in threads  # it only waited
    assert answered(emu_thread, first) == answered(emu_thread, second) == 1
    assert loop_threads() == []


def test_a_fan_out_goes_on_while_its_caller_is_busy(emu_thread: Emulator) -> None:
    ids = demo_login_ids(4, seed=362)
    for i, login in enumerate(ids):
        emu_thread.set_login(login, pending=2 + 10 * i)  # the first ends well before
    with fast_sync_client(emu_thread) as client:
        with client.investments_many(ids, concurrency=4) as results:
            first = next(results)
            # the caller does something else; the other logins are polled meanwhile
            wait_for(lambda: sum(answered(emu_thread, login) for login in ids) == 4)
            rest = list(results)
    assert first.ok and all(r.ok for r in rest)
    assert sorted(r.login_id for r in [first, *rest]) == sorted(ids)


def test_calling_the_client_from_its_own_hook_raises_instead_of_waiting_forever(
    emu_thread: Emulator,
) -> None:
    login, other = demo_login_ids(2, seed=363)
    errors: list[BaseException] = []

    def hook(event: Event) -> None:
        if event.kind == "done" and event.login_id == login:
            try:
                client.investments(other)
            except RuntimeError as exc:
                errors.append(exc)

    with fast_sync_client(emu_thread, event_hooks=[hook]) as client:
        client.investments(login)
        with ThreadPoolExecutor(2) as pool:  # also when the loop's own thread runs it
            with client.investments_many([login], concurrency=1) as results:
                assert [r.ok for r in results] == [True]
            list(pool.map(client.investments, [login, login]))
    assert len(errors) >= 2
    assert all("inside its own event loop" in str(e) for e in errors)
    assert answered(emu_thread, other) == 0


@pytest.mark.parametrize("threads", [1, 8])
def test_close_leaves_no_loop_thread_behind(emu_thread: Emulator, threads: int) -> None:
    ids = demo_login_ids(16, seed=364)
    client = fast_sync_client(emu_thread)
    with ThreadPoolExecutor(threads) as pool:
        assert len(list(pool.map(client.investments, ids))) == 16
    client.close()
    assert loop_threads() == []
    assert client.closed


def test_closing_inside_an_open_fan_out_ends_it(emu_thread: Emulator) -> None:
    ids = demo_login_ids(4, seed=365)
    for i, login in enumerate(ids):
        emu_thread.set_login(login, pending=10**6 if i else 0)
    client = fast_sync_client(emu_thread)
    with client.investments_many(ids, concurrency=4) as results:
        assert next(results).ok
        closing = threading.Thread(target=client.close, daemon=True)
        closing.start()
        closing.join(60)
        assert not closing.is_alive(), "close() waits for the block forever"
        with pytest.raises(ClientClosedError):
            next(results)
    assert loop_threads() == []
    wait_for(lambda: emu_thread.open_connections == 0)
    quiet(emu_thread)  # and nothing reaches Flinks afterwards


def test_a_call_from_inside_another_running_loop_is_handed_over(emu_thread: Emulator) -> None:
    # a notebook cell, or an async function calling sync code: that thread runs its own
    # loop, so it cannot run the client's; the client's thread does
    login = demo_login_ids(1, seed=366)[0]
    emu_thread.set_login(login, pending=2)
    with fast_sync_client(emu_thread) as client:

        async def cell() -> object:
            return client.investments(login)

        with ThreadPoolExecutor(1) as pool:  # (closed last: a stranded call fails here)
            answer = pool.submit(asyncio.run, cell()).result(timeout=60)
    assert isinstance(answer, Investments)
    assert answered(emu_thread, login) == 1


def test_a_leading_main_thread_handles_ctrl_c_only_during_its_call(
    emu_thread: Emulator,
) -> None:
    # the call's own handler while it runs (a hook runs in the leading thread); Python's
    # put back after it; a handler of the user's own left alone
    assert threading.current_thread() is threading.main_thread()
    login = demo_login_ids(1, seed=368)[0]
    during: list[object] = []

    def hook(event: Event) -> None:
        if event.kind == "done":
            during.append(signal.getsignal(signal.SIGINT))

    def users(signum: int, frame: object) -> None:
        pass

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with fast_sync_client(emu_thread, event_hooks=[hook]) as client:
            client.investments(login)
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
            signal.signal(signal.SIGINT, users)
            client.investments(login)
            assert signal.getsignal(signal.SIGINT) is users
    finally:
        signal.signal(signal.SIGINT, before)
    assert len(during) == 2
    assert getattr(during[0], "flinks_leader", False) and during[1] is users


def test_a_closed_loop_is_freed_without_the_cyclic_gc() -> None:
    # after leading and handed-over calls, nothing of it refers back to it (a bound method
    # kept on it did): dropped, it and what it owned go at once
    class Owned:
        pass

    async def aclose(owned: Owned) -> None:
        pass

    async def one() -> int:
        await asyncio.sleep(0)
        return 1

    async def hold(event: threading.Event) -> None:
        while not event.is_set():  # noqa: ASYNC110  (set from another thread)
            await asyncio.sleep(0.001)

    def used_and_closed() -> tuple[weakref.ref[object], ...]:
        loop = LoopThread("freed", Owned, aclose)
        assert loop.run(one) == 1  # led by this thread
        release = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            leader = pool.submit(loop.run, lambda: hold(release))
            me = threading.get_ident()
            wait_for(lambda: loop._leader not in (None, me), 60)
            assert loop.run(one) == 1  # handed over to the leading thread
            release.set()
            leader.result()
        loop.close()
        return weakref.ref(loop), weakref.ref(loop.owned)

    gc.disable()
    try:
        refs = used_and_closed()  # (its locals gone)
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()


def test_ctrl_c_stops_a_leading_call_at_once_not_at_its_next_poll(
    emu_thread: Emulator, tmp_path: Path
) -> None:
    # the main thread runs the loop, asleep until its next poll in 10 minutes: Ctrl-C
    # (sent here from another thread, as a signal may reach any) wakes it
    login = demo_login_ids(1, seed=367)[0]
    emu_thread.set_login(login, pending=10**6)
    code = (
        CLIENT.replace("poll_interval=0.005", "poll_interval=600").replace(
            "poll_timeout=60", "poll_timeout=900"
        )
        + f"""
import os, signal, threading
def ctrl_c():
    while client.requests_sent < 2:
        time.sleep(0.005)
    time.sleep(0.1)  # the loop asleep in select()
    global sent_at
    sent_at = time.monotonic()
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=ctrl_c, daemon=True).start()
try:
    client.investments({login!r})
except KeyboardInterrupt:
    took = time.monotonic() - sent_at
    print(took, client.requests_sent, client.in_flight_requests, flush=True)
"""
    )
    code_, out, err = run_script(tmp_path, code, emu_thread.url)
    assert code_ == 0, err
    took, sent, in_flight = out.split()[-3:]
    assert float(took) < 30  # not at the next poll (600 s)
    assert int(in_flight) == 0
    assert quiet(emu_thread) == int(sent)  # none after the interrupt
