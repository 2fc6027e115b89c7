"""The client-wide budget for response bodies in flight (``max_body_bytes_in_flight``).

A body counts against the budget from the moment it is read until its decode is done
(its typed value, or the raw bytes handed back, are the caller's from then on):

* a body whose length is known (``Content-Length``, not compressed) takes its whole
  length before the first byte is read, all or nothing;
* a body of unknown length (chunked, or compressed: counted after decompression) takes
  each chunk as it arrives.

A body that does not fit waits, first come first served, until bodies before it are done.
So a fan-out of 50 logins whose answers weigh 200 MB each holds at most the budget in
bodies at once, instead of 10 GB. One rule keeps it from ever waiting forever: when every
body that holds part of the budget is itself waiting (each holds part of an unknown-length
body), the oldest waiter goes ahead anyway. The budget can therefore be exceeded by at most
one body (``max_response_bytes``), and only in that case.
"""

from __future__ import annotations

import asyncio
import collections

__all__ = ["BodyBudget"]


class BodyBudget:
    """Bytes of response bodies held at once by one client (see the module docstring)."""

    __slots__ = ("_held_by_waiters", "_waiters", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: bytes held now (read, or being decoded)
        self.used = 0
        self._waiters: collections.deque[tuple[asyncio.Future[None], int, int]] = (
            collections.deque()
        )
        self._held_by_waiters = 0  # bytes held by bodies that are waiting for more

    def try_take(self, size: int, held: int = 0) -> bool:
        """Take ``size`` bytes now if they fit (or if waiting could never end); ``held``:
        what the caller's body already holds."""
        if (not self._waiters and self.used + size <= self.limit) or (
            self.used - self._held_by_waiters - held <= 0  # everyone else is waiting
        ):
            self.used += size
            return True
        return False

    async def take(self, size: int, held: int = 0) -> None:
        """Take ``size`` bytes, waiting in line until they fit."""
        if self.try_take(size, held):
            return
        future = asyncio.get_running_loop().create_future()
        entry = (future, size, held)
        self._waiters.append(entry)
        self._held_by_waiters += held
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.give(size)  # granted as we were cancelled: hand it on
            else:
                if entry in self._waiters:  # else _wake already dropped it
                    self._waiters.remove(entry)
                    self._held_by_waiters -= held
                self._wake()
            raise

    def give(self, size: int) -> None:
        """Give back ``size`` bytes (a body decoded, or dropped)."""
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            future, size, held = self._waiters[0]
            if self.used + size > self.limit and self.used - self._held_by_waiters > 0:
                return  # a body that is not waiting will give back
            self._waiters.popleft()
            self._held_by_waiters -= held
            if future.done():  # cancelled meanwhile: its own handler has nothing to undo
                continue
            self.used += size
            future.set_result(None)
