"""Many callers' scripts sent as one (flinks_async._redis._batch.Batched): its rules, with
a ``send`` that records what it was given (Redis itself is tested through the limiter and
the flights, in test_redis_limiter.py, test_redis_flights.py and test_coordination.py)."""

from __future__ import annotations

import asyncio

import pytest

from flinks_async._redis._batch import Batched

pytestmark = pytest.mark.anyio


class Recorder:
    """A ``send`` that answers each item doubled, once released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.sent = asyncio.Event()  # a batch was handed over
        self.gate = asyncio.Event()
        self.fail_first: BaseException | None = None  # the first batch's failure

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.sent.set()
        await self.gate.wait()
        if self.fail_first is not None and len(self.batches) == 1:
            raise self.fail_first
        return [2 * i for i in items]


async def test_a_lone_caller_goes_at_once_and_those_queued_meanwhile_go_together() -> None:
    send = Recorder()
    batched = Batched(send)
    first = asyncio.create_task(batched(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert send.batches == [[1]]  # sent without waiting for company
    others = [asyncio.create_task(batched(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    send.gate.set()
    assert await asyncio.gather(first, *others) == [2, 4, 6, 8]
    assert send.batches == [[1], [2, 3, 4]]


async def test_batches_are_capped() -> None:
    send = Recorder()
    send.gate.set()
    batched = Batched(send, max_batch=2)
    results = await asyncio.gather(*(batched(i) for i in range(5)))
    assert results == [0, 2, 4, 6, 8]
    assert [len(b) for b in send.batches] == [2, 2, 1]


async def test_a_caller_cancelled_on_the_way_gets_its_answer_to_the_orphan_hook() -> None:
    send = Recorder()
    orphans: list[tuple[int, int]] = []
    batched = Batched(send, orphan=lambda item, answer: orphans.append((item, answer)))
    gone = asyncio.create_task(batched(7))
    kept = asyncio.create_task(batched(8))
    await send.sent.wait()  # on its way
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    send.gate.set()
    assert await kept == 16
    assert orphans == [(7, 14)]  # answered for nobody: the hook undoes it


async def test_a_caller_cancelled_before_sending_is_never_sent() -> None:
    send = Recorder()
    batched = Batched(send)
    first = asyncio.create_task(batched(1))
    await asyncio.sleep(0)
    queued = asyncio.create_task(batched(2))
    await asyncio.sleep(0)
    queued.cancel()
    send.gate.set()
    assert await first == 2
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert send.batches == [[1]]


async def test_a_failed_send_fails_its_callers_and_the_next_batch_still_goes() -> None:
    send = Recorder()
    send.fail_first = OSError("connection refused")
    batched = Batched(send)
    first = asyncio.create_task(batched(1))
    await asyncio.sleep(0)
    second = asyncio.create_task(batched(2))
    await asyncio.sleep(0)
    send.gate.set()
    with pytest.raises(OSError, match="refused"):
        await first
    assert await second == 4
    assert send.batches == [[1], [2]]
