"""Calls' deadlines, one timer for many: what ``asyncio.timeout`` does, cheaper.

Every data call is bounded by ``poll_timeout`` from its start (``_polling.run_plan``).
``asyncio.timeout`` arms a timer per call (a handle pushed on the event loop's heap,
cancelled at the call's end, left in the heap until the loop sweeps it). Calls that share
one ``poll_timeout`` and start one after the other expire in the order they started, so
:class:`Deadlines` keeps them in a deque per duration, with ONE timer armed for the
oldest: a call's start appends to the deque, its end marks its entry done (dropped when it
reaches the front, or swept when done entries are most of the deque), and the timer, when
it fires, cancels the calls whose time is up and is armed again for the next.

The semantics are ``asyncio.timeout``'s (Python 3.11-3.13): the task is cancelled at its
deadline; at the end of the guarded code, that cancellation is withdrawn
(``task.uncancel()``), and it is reported as the deadline's (:attr:`Entry.timed_out`) only
if nobody else cancelled the task meanwhile. A call that does not fit (its deadline already
passed, earlier than the last one queued, another event loop) gets ``None`` from
:meth:`Deadlines.enter`: the caller uses ``asyncio.timeout`` then.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

__all__ = ["Deadlines", "Entry"]

#: done entries kept in a deque before a sweep is considered (then: when most are done)
_SWEEP_FROM = 64


class Entry:
    """One call's deadline in a :class:`Deadlines` queue."""

    __slots__ = ("cancelling", "due", "expiring", "ours", "task")

    def __init__(self, due: float, task: asyncio.Task[Any]) -> None:
        self.due = due  #: ``time.monotonic()`` at which the call is cancelled
        self.task: asyncio.Task[Any] | None = task  #: None once the call left
        self.cancelling = task.cancelling()  #: the task's cancel requests when it entered
        self.expiring = False  #: the deadline passed and cancelled the task
        self.ours = False  #: expiring, and no other cancel request came meanwhile

    def timed_out(self, exc: BaseException) -> bool:
        """Whether the guarded code ended with ``exc`` because of this deadline (what
        ``asyncio.timeout`` turns into ``TimeoutError``): it expired, and the task's
        ``CancelledError`` is ours alone. Call once, after :meth:`Deadlines.leave`."""
        return self.ours and isinstance(exc, asyncio.CancelledError)


class _Queue:
    """The deadlines of one duration, in start order, and the one timer for the oldest."""

    __slots__ = ("done", "entries", "loop", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.entries: collections.deque[Entry] = collections.deque()
        self.done = 0  #: entries left (task None) still in ``entries``
        self.timer: asyncio.TimerHandle | None = None
        self.loop = loop

    def arm(self, due: float) -> None:
        loop = self.loop
        self.timer = loop.call_at(loop.time() + (due - time.monotonic()), self.fire)

    def fire(self) -> None:
        """The timer: cancel each call whose time is up, arm again for the next."""
        self.timer = None
        entries = self.entries
        now = time.monotonic()
        while entries:
            entry = entries[0]
            task = entry.task
            if task is None:
                entries.popleft()
                self.done -= 1
                continue
            if entry.due > now:
                self.arm(entry.due)
                return
            entries.popleft()
            entry.expiring = True
            task.cancel()

    def drop(self, entry: Entry) -> None:
        """``entry`` left before its deadline: out of the deque now or later."""
        entries = self.entries
        if entries[0] is entry:
            entries.popleft()
            while entries and entries[0].task is None:
                entries.popleft()
                self.done -= 1
            if not entries and self.timer is not None:
                self.timer.cancel()  # idle: no timer left behind
                self.timer = None
            return
        self.done += 1
        if self.done >= _SWEEP_FROM and 2 * self.done > len(entries):
            self.entries = collections.deque(e for e in entries if e.task is not None)
            self.done = 0


class Deadlines:
    """The deadlines of one client's calls: a queue per duration (see the module
    docstring)."""

    __slots__ = ("_queues",)

    def __init__(self) -> None:
        self._queues: dict[float, _Queue] = {}

    def enter(self, duration: float, started: float) -> Entry | None:
        """Bound the current task at ``started + duration`` (``time.monotonic()``), or
        ``None`` when this deadline does not fit here (use ``asyncio.timeout``)."""
        due = started + duration
        task = asyncio.current_task()
        if task is None or due <= time.monotonic():
            return None
        loop = task.get_loop()
        queue = self._queues.get(duration)
        if queue is None or queue.loop is not loop:
            if queue is not None and queue.entries and not queue.loop.is_closed():
                return None  # another running loop's calls are in it
            queue = self._queues[duration] = _Queue(loop)
        entries = queue.entries
        if entries and due < entries[-1].due:
            return None  # out of order (a call that started earlier)
        entry = Entry(due, task)
        entries.append(entry)
        if queue.timer is None:
            queue.arm(due)
        return entry

    def leave(self, duration: float, entry: Entry) -> None:
        """The guarded code ended: the entry is done; a cancellation it made is withdrawn
        (``task.uncancel()``, as ``asyncio.timeout`` does), and ``entry.timed_out(exc)``
        says whether the error is the deadline's."""
        task = entry.task
        entry.task = None  # the entry (held by an error's traceback) holds no task: no cycle
        if task is None:
            return
        if entry.expiring:
            # asyncio.timeout: ours only if no other cancel request came meanwhile
            entry.ours = task.uncancel() <= entry.cancelling
            return
        self._queues[duration].drop(entry)
