"""Single-flight: concurrent callers of the same work share one run of it.

The shared run is an asyncio task of its own, so that no single caller's cancellation
stops it while others still wait. It is cancelled (and awaited, so its connection is
released before the last caller's cancellation finishes) when its last caller leaves.
A plain asyncio task is used on purpose: the run must outlive any one caller's cancel
scope, and a client may be opened and closed from different tasks (aiohttp's
``cleanup_ctx``), which rules out a task group owned by the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, TypeVar

import anyio

from ._errors import ClientClosedError

__all__ = ["SingleFlight"]

T = TypeVar("T")


class _Flight:
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.waiters = 0


class SingleFlight:
    """Runs at most one task per key; callers arriving meanwhile join it."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight] = {}

    def __len__(self) -> int:
        """How many shared runs are in progress."""
        return len(self._flights)

    async def run(self, key: Hashable, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Await ``work()``, or join the run already in progress under ``key``."""
        flight = self._flights.get(key)
        # A finished run's removal callback may still be queued: never join it (a cancelled
        # run would hand this caller its cancellation).
        if flight is None or flight.task.done():
            task = asyncio.get_running_loop().create_task(work())
            flight = self._flights[key] = _Flight(task)
            task.add_done_callback(lambda _t: self._forget(key, flight))
        flight.waiters += 1
        try:
            result: T = await asyncio.shield(flight.task)
            return result
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if flight.task.cancelled() and me is not None and not me.cancelling():
                # the run was cancelled under us (the client closed), not this caller
                raise ClientClosedError("the FlinksClient was closed during this call") from None
            raise
        finally:
            flight.waiters -= 1
            if flight.waiters == 0:
                # Out of the table first: a caller arriving while the run is being torn down
                # must start a run of its own, not join this dying one.
                if self._flights.get(key) is flight:
                    del self._flights[key]
                if not flight.task.done():
                    flight.task.cancel()
                    with anyio.CancelScope(shield=True):
                        await asyncio.wait([flight.task])
                self._forget(key, flight)

    def _forget(self, key: Hashable, flight: _Flight) -> None:
        """Drop ``flight`` from the table (idempotent; only once its task is done)."""
        if self._flights.get(key) is flight and flight.task.done():
            del self._flights[key]
        if flight.task.done() and not flight.task.cancelled():
            flight.task.exception()  # mark retrieved: every waiter got it already

    async def aclose(self) -> None:
        """Cancel every run in progress and wait for them to end."""
        tasks = [f.task for f in self._flights.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(tasks)
