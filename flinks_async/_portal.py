"""One event loop in a background thread, for the blocking client.

A :class:`LoopThread` owns a thing that lives in its loop (the blocking client's
``FlinksClient``) and runs coroutines there for any thread, in a thread started by
anyio's blocking portal (:func:`anyio.from_thread.start_blocking_portal`: a daemon thread
running an asyncio loop whose main task serves the portal until it is stopped, then
joined). Each call is handed over with one ``call_soon_threadsafe`` (a :class:`_Call`;
the caller waits on a :class:`concurrent.futures.Future`), not with the portal's
``start_task_soon``, which first blocks the caller until the loop has spawned the task
(anyio's ``from_thread.run_sync``): a second thread handover per call, that cost 32
threads sharing a client about half their throughput on one core. The portal's own
``call`` serves the rare rest (the loop, ``aclose``, a fan-out's block):

* **Started on first use**, by whichever thread comes first (under a lock); every thread
  then shares the one loop, its connection pool and single-flight table.
* **Interrupted at once**: when the waiting thread is interrupted (``KeyboardInterrupt``
  from Ctrl-C, or any exception raised in it), :meth:`LoopThread.run` cancels the
  coroutine's task (its future cancelled: the task is cancelled in the loop) and waits
  until the task has ended, so nothing it would have sent goes out after
  the exception reaches the caller.
* **Closed once** (:meth:`LoopThread.close`): the owned thing's ``aclose``, then the
  portal stopped and its thread joined. Every live one is closed at interpreter exit
  (``atexit``), before the interpreter tears its modules down.
* **Fork-safe**: in a child process after ``os.fork()`` (Celery's prefork pool,
  multiprocessing's ``fork``), the parent's loop thread does not exist. Each
  :class:`LoopThread` made before the fork forgets it without touching it (its sockets
  and its selector belong to the parent: closing them from the child would break the
  parent's connections), builds a fresh owned thing, and starts a new loop on first use.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._errors import ClientClosedError

__all__ = ["LoopThread"]

T = TypeVar("T")
R = TypeVar("R")

#: how long an interrupted call waits for its task to end (its cleanup: a socket closed)
CANCEL_WAIT = 5.0

#: every LoopThread not closed yet (closed at exit; reset in a child after fork): held
#: strongly, so that a client dropped without close() still closes at exit
_LIVE: set[LoopThread[Any]] = set()
#: what a child inherited from its parent's loops: kept, never used or closed (see above)
_INHERITED: list[object] = []


class LoopThread(Generic[R]):
    """A background event loop owning ``make()``'s result (see the module docstring);
    ``aclose(owned)`` is awaited in the loop when it closes."""

    def __init__(
        self, name: str, make: Callable[[], R], aclose: Callable[[R], Awaitable[None]]
    ) -> None:
        self._name = name
        self._make = make
        self._aclose = aclose
        self._lock = threading.Lock()
        self._cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the portal's (set last)
        self._closed = False
        self._waiting: set[concurrent.futures.Future[Any]] = set()  # calls being awaited
        #: the thing living in the loop (rebuilt in a child after fork)
        self.owned: R = make()
        #: 0, then 1, 2... after each fork: views rebuild what they derived from ``owned``
        self.generation = 0
        _LIVE.add(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def portal(self) -> BlockingPortal:
        """The portal, started on first use; :class:`ClientClosedError` once closed."""
        self._loop or self._start()
        assert self._portal is not None
        return self._portal

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise ClientClosedError(
                    "this SyncFlinksClient is closed; open a new one (or keep one open for "
                    "the life of the process: it closes itself at exit)"
                )
            if self._loop is None:
                cm = start_blocking_portal("asyncio", name=self._name)
                portal = cm.__enter__()
                self._cm, self._portal = cm, portal
                self._loop = portal.call(asyncio.get_running_loop)
            return self._loop

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Await ``work()`` in the loop; its result, or its exception. Interrupted here
        (Ctrl-C), it cancels the task and waits for it to end, then re-raises."""
        loop = self._loop or self._start()
        call = _Call(work)
        try:
            loop.call_soon_threadsafe(call.start, loop)
        except RuntimeError:  # the loop closed since (close() from another thread)
            raise _closed_during_the_call() from None
        future = call.future
        self._waiting.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._closed:  # the loop stopped under it (close() from another thread)
                raise _closed_during_the_call() from None
            raise
        except BaseException:
            if not future.done():  # interrupted while waiting: stop the work now
                with contextlib.suppress(RuntimeError):  # a loop closed: nothing runs
                    loop.call_soon_threadsafe(call.cancel)
                with contextlib.suppress(BaseException):  # its end, whatever it is
                    future.result(CANCEL_WAIT)
            raise
        finally:
            self._waiting.discard(future)

    def close(self) -> None:
        """Close the owned thing in the loop, stop the loop and join its thread.
        Idempotent; a call waiting in another thread ends with ``aclose``'s error."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            cm, portal = self._cm, self._portal
            self._cm = self._portal = self._loop = None
        _LIVE.discard(self)
        if cm is None or portal is None:  # never started: nothing opened in any loop
            return
        try:
            portal.call(self._aclose, self.owned)
        finally:
            cm.__exit__(None, None, None)
            for future in list(self._waiting):  # handed over as the loop stopped: never run
                future.cancel()

    def _forget_parent(self) -> None:
        """In a child after fork: leave the parent's loop and owned thing be, start anew."""
        self._lock = threading.Lock()  # it may have been held by a thread not copied
        self._waiting = set()  # the parent's threads' calls
        if self._portal is not None:
            _INHERITED.append((self._cm, self._portal, self._loop, self.owned))
            self._cm = self._portal = self._loop = None
            self.owned = self._make()
            self.generation += 1


def _closed_during_the_call() -> ClientClosedError:
    return ClientClosedError("this SyncFlinksClient was closed during the call")


class _Call(Generic[T]):
    """One call handed to the loop: its task, and the future its caller waits on, set
    when the task has ended (so a cancelled call's caller waits for its cleanup).

    Cheaper than :func:`asyncio.run_coroutine_threadsafe` (no chained futures, no wrapper
    coroutine, no event to wait on after a cancel): the handover is what 32 threads
    sharing a client pay for each call."""

    __slots__ = ("cancelled", "future", "task", "work")

    def __init__(self, work: Callable[[], Awaitable[T]]) -> None:
        self.work = work
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.task: asyncio.Future[T] | None = None
        self.cancelled = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the loop: start the task (not when cancelled before it started)."""
        if self.cancelled:
            self.future.cancel()
            return
        try:
            self.task = task = asyncio.ensure_future(self.work(), loop=loop)
        except BaseException as exc:  # work() itself raised: no task to wait for
            self._settle(self.future.set_exception, exc)
            return
        task.add_done_callback(self._done)

    def cancel(self) -> None:
        """In the loop: cancel the task (or keep it from starting)."""
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()

    def _done(self, task: asyncio.Future[T]) -> None:
        if task.cancelled():
            self.future.cancel()
        elif (exc := task.exception()) is not None:
            self._settle(self.future.set_exception, exc)
        else:
            self._settle(self.future.set_result, task.result())

    @staticmethod
    def _settle(setter: Callable[[Any], None], value: object) -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # close() cancelled it
            setter(value)


def _close_all() -> None:
    for loop in list(_LIVE):
        loop.close()


def _after_fork_in_child() -> None:
    for loop in list(_LIVE):
        loop._forget_parent()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)
