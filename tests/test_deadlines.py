"""The calls' deadline queue: ``asyncio.timeout``'s semantics with one timer for many."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from flinks_async import PollTimeoutError
from flinks_async._deadlines import _SWEEP_FROM, Deadlines, Entry
from flinks_async.testing import Emulator

from .conftest import fast_client

pytestmark = pytest.mark.anyio

SOON = 0.02  # seconds left before the first deadline of a test


async def _guarded(deadlines: Deadlines, duration: float, started: float) -> tuple[str, Entry]:
    """Wait forever under a deadline; how it ended and its entry."""
    entry = deadlines.enter(duration, started)
    assert entry is not None
    try:
        await asyncio.get_running_loop().create_future()
    except BaseException as exc:
        deadlines.leave(duration, entry)
        return ("timed out" if entry.timed_out(exc) else type(exc).__name__), entry
    raise AssertionError("never resolved")


def _queue(deadlines: Deadlines, duration: float) -> Any:
    return deadlines._queues[duration]


async def test_the_oldest_expires_and_the_next_is_left_alone() -> None:
    deadlines, now = Deadlines(), time.monotonic()
    first = asyncio.create_task(_guarded(deadlines, 10.0, now - 10.0 + SOON))
    later = asyncio.create_task(_guarded(deadlines, 10.0, now + 100.0))
    assert await first == ("timed out", first.result()[1])
    assert not later.done()
    queue = _queue(deadlines, 10.0)
    assert queue.timer is not None and len(queue.entries) == 1  # armed for the next
    assert later.cancelling() == 0  # the expiry's cancel was withdrawn from no one else
    later.cancel()
    assert (await later)[0] == "CancelledError"
    assert queue.timer is None and not queue.entries  # idle: no timer left behind


async def test_a_cancel_from_outside_is_not_the_deadline() -> None:
    deadlines = Deadlines()
    task = asyncio.create_task(_guarded(deadlines, 10.0, time.monotonic()))
    await asyncio.sleep(0)
    task.cancel()
    how, entry = await task
    assert how == "CancelledError" and not entry.expiring


async def test_a_cancel_from_outside_as_the_deadline_passes_stays_a_cancel() -> None:
    deadlines = Deadlines()
    seen: list[tuple[bool, bool]] = []

    async def body() -> None:
        entry = deadlines.enter(10.0, time.monotonic() - 10.0 + SOON)
        assert entry is not None
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError as exc:
            me = asyncio.current_task()
            assert me is not None
            me.cancel()  # a second request (as from outside) before the end
            deadlines.leave(10.0, entry)
            seen.append((entry.expiring, entry.timed_out(exc)))
            raise

    task = asyncio.create_task(body())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [(True, False)]  # as asyncio.timeout: not ours to swallow


async def test_the_task_is_uncancelled_after_its_deadline() -> None:
    deadlines = Deadlines()
    how, entry = await asyncio.create_task(
        _guarded(deadlines, 10.0, time.monotonic() - 10.0 + SOON)
    )
    assert how == "timed out" and entry.task is None  # let go of the task: no cycle


async def test_what_does_not_fit_is_left_to_asyncio_timeout() -> None:
    deadlines, now = Deadlines(), time.monotonic()
    later = asyncio.create_task(_guarded(deadlines, 10.0, now + 100.0))
    await asyncio.sleep(0)
    assert deadlines.enter(10.0, now) is None  # earlier than the last one queued
    assert deadlines.enter(10.0, now - 20.0) is None  # already past
    assert deadlines.enter(20.0, now) is not None  # another duration: another queue
    later.cancel()
    await later


async def test_done_entries_behind_a_long_call_are_swept() -> None:
    deadlines, now = Deadlines(), time.monotonic()
    oldest = asyncio.create_task(_guarded(deadlines, 10.0, now))
    await asyncio.sleep(0)
    for i in range(_SWEEP_FROM * 2):
        entry = deadlines.enter(10.0, now + 1 + i)
        assert entry is not None
        deadlines.leave(10.0, entry)
    assert len(_queue(deadlines, 10.0).entries) < _SWEEP_FROM + 2
    oldest.cancel()
    await oldest
    assert not _queue(deadlines, 10.0).entries


async def test_a_client_call_past_its_deadline(emu: Emulator, login: str) -> None:
    emu.set_login(login, pending=10_000)
    async with fast_client(emu, poll_timeout=0.05) as client:
        with pytest.raises(PollTimeoutError) as caught:
            await client.investments(login)
        assert caught.value.__context__ is None and caught.value.login_id == login
        queue = _queue(client._deadlines, 0.05)
        assert queue.timer is None and not queue.entries


def test_a_queue_left_by_a_closed_loop_is_replaced() -> None:
    deadlines = Deadlines()

    async def stranded() -> None:  # a call still in the queue when its loop is closed
        assert deadlines.enter(10.0, time.monotonic()) is not None

    asyncio.run(stranded())

    async def next_run() -> Entry | None:
        return deadlines.enter(10.0, time.monotonic())

    assert asyncio.run(next_run()) is not None
