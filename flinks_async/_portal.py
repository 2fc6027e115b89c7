"""One event loop shared by every thread, for the blocking client.

A :class:`LoopThread` owns a thing that lives in its loop (the blocking client's
``FlinksClient``) and runs coroutines there for any thread. The loop is an asyncio loop
of its own (``asyncio.new_event_loop()``), run by one thread at a time, by
**leader and followers**:

* **A caller leads when the loop is idle**: the calling thread runs the loop itself until
  its call has ended (``loop.run_forever()``, stopped by the call's task). A script or a
  view calling one thing at a time pays no thread handover: its call runs in its own
  thread, as ``asyncio.run`` would run it, without a new loop and pool each time. (Handing
  each call to a loop thread and back cost a small call about 0.1 ms of thread wake-ups,
  1.13x the async call's wall time.)
* **Others follow**: a call made while some thread runs the loop is handed over with
  one ``call_soon_threadsafe`` (:class:`~flinks_async._handover.Handover`; the caller
  waits on it, an :class:`~flinks_async._handover.Outcome` set when the call's task has
  ended).
* **The loop thread drives when the leader leaves**: when the leading caller's own call
  ends while others' calls are still in the loop, or a fan-out's block is open
  (:meth:`LoopThread.hold`), the loop's own daemon thread (started on first use, idle
  otherwise) runs the loop until no call needs it.

Its promises:

* **Started on first use**, by whichever thread comes first (under a lock); every thread
  then shares the one loop, its connection pool and single-flight table.
* **Interrupted at once**: when the waiting thread is interrupted (``KeyboardInterrupt``
  from Ctrl-C, or any exception raised in it), :meth:`LoopThread.run` cancels the
  call's task and waits until it has ended, so nothing it would have sent goes out after
  the exception reaches the caller. A main thread leading the loop takes Ctrl-C as
  ``asyncio.run`` does (``signal.SIGINT`` handled while it leads): the call's task is
  cancelled, its cleanup runs, then ``KeyboardInterrupt`` is raised.
* **Closed once** (:meth:`LoopThread.close`): the owned thing's ``aclose``, every task
  left cancelled, the loop thread joined and the loop closed. Every live one is closed
  at interpreter exit (``atexit``), before the interpreter tears its modules down.
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
import functools
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, TypeVar

from ._errors import ClientClosedError
from ._handover import Handover, SigintCancels, WakeBeforeWaiting

__all__ = ["Held", "LoopThread"]

T = TypeVar("T")
R = TypeVar("R")

#: how long an interrupted call (or ``close()``) waits for the tasks it cancelled to end
CANCEL_WAIT = 5.0

#: ``LoopThread._leader`` while the loop's own thread runs the loop
_LOOP_THREAD = -1

#: every LoopThread not closed yet (closed at exit; reset in a child after fork): held
#: strongly, so that a client dropped without close() still closes at exit
_LIVE: set[LoopThread[Any]] = set()
#: what a child inherited from its parent's loops: kept, never used or closed (see above)
_INHERITED: list[object] = []


class LoopThread(Generic[R]):
    """An event loop shared by threads, owning ``make()``'s result (see the module
    docstring); ``aclose(owned)`` is awaited in the loop when it closes."""

    _selector: WakeBeforeWaiting  # the loop's (set with it)

    def __init__(
        self, name: str, make: Callable[[], R], aclose: Callable[[R], Awaitable[None]]
    ) -> None:
        self._name = name
        self._make = make
        self._aclose = aclose
        self._lock = threading.Lock()  # guards what follows
        self._wake = threading.Condition(self._lock)  # the loop thread waits here to drive
        self._idle = threading.Condition(self._lock)  # close() waits here for no leader
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._leader: int | None = None  # who runs the loop: a thread's ident, _LOOP_THREAD
        self._pending = 0  # followers' calls in the loop, and open holds
        self._closing = False  # close() began
        self._closed = False  # close() ended its calls: no more
        self._served = False  # the loop's thread has returned
        self._waiting: set[Handover[Any]] = set()  # followers' calls
        #: the thing living in the loop (rebuilt in a child after fork)
        self.owned: R = make()
        #: 0, then 1, 2... after each fork: views rebuild what they derived from ``owned``
        self.generation = 0
        _LIVE.add(self)

    @property
    def closed(self) -> bool:
        return self._closing

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closing:
                raise _closed()
            if self._loop is None:
                self._selector = selector = WakeBeforeWaiting()
                loop = asyncio.SelectorEventLoop(selector)
                self._thread = threading.Thread(
                    target=self._serve, args=(loop,), name=self._name, daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Await ``work()`` in the loop; its result, or its exception. Interrupted here
        (Ctrl-C), it cancels the task and waits for it to end, then re-raises."""
        loop = self._loop or self._start()
        running = asyncio._get_running_loop()
        if running is loop:
            raise _called_inside()
        me = threading.get_ident()
        with self._lock:
            if self._closed:
                raise _closed()
            # (the lead still held by this thread, not running the loop: a Ctrl-C
            # landed between taking it and running the loop; take it again)
            lead = running is None and self._leader in (None, me)
            if lead:
                self._leader = me
            else:  # counted, then handed over, under the lock: close() cancels it, or it runs
                call = Handover(work, loop, self._followed, self._selector)
                self._pending += 1
                self._waiting.add(call)
                if self._leader is None:  # this thread runs another loop: ours is idle
                    self._leader = _LOOP_THREAD
                    self._wake.notify()
                try:
                    loop.call_soon_threadsafe(call)
                except BaseException:  # a Ctrl-C in here: if the call reached the loop,
                    call.cancelled = True  # it ends there before it starts, and is uncounted
                    raise
        if lead:
            return self._lead(loop, work)
        return self._follow(loop, call)

    def hold(self) -> None:
        """Keep the loop running (in its own thread when no caller leads) until
        :meth:`release`: a fan-out's block, whose logins go on between ``next()`` calls."""
        self._loop or self._start()
        with self._lock:
            self._pending += 1
            if self._leader is None:
                self._leader = _LOOP_THREAD
                self._wake.notify()

    def release(self) -> None:
        """The end of a :meth:`hold`."""
        with self._lock:
            self._pending -= 1
            self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        """Under the lock: the loop thread stops driving when no call needs the loop."""
        loop = self._loop
        if self._pending <= 0 and self._leader == _LOOP_THREAD and loop is not None:
            with contextlib.suppress(RuntimeError):  # closed
                loop.call_soon_threadsafe(loop.stop)

    def _lead(self, loop: asyncio.AbstractEventLoop, work: Callable[[], Awaitable[T]]) -> T:
        """Run the loop in this thread until ``work()``'s task has ended."""
        try:
            task = loop.create_task(_awaited(work))
        except BaseException:
            self._step_down()
            raise
        task.add_done_callback(_stop_loop)
        try:
            with SigintCancels(task) as sigint:
                while not task.done():  # (a second Ctrl-C raises in run_forever)
                    loop.run_forever()
        except BaseException:
            # a second Ctrl-C, raised in the loop, or a task's SystemExit: it goes on
            # at once; the call is cancelled, and the loop's thread sees it end
            if not task.done():
                task.cancel()
                with self._lock:
                    self._pending += 1
                task.add_done_callback(self._followed_task)
            raise
        finally:
            self._selector.flush()
            self._step_down()
        if task.cancelled():
            if sigint.count:
                raise KeyboardInterrupt
            if self._closing:
                raise _closed_during_the_call()
            raise concurrent.futures.CancelledError  # as a follower's would
        return task.result()

    def _step_down(self) -> None:
        """The leading caller leaves: the loop thread drives on if calls need it."""
        with self._lock:
            if self._pending:
                self._leader = _LOOP_THREAD
                self._wake.notify()
            else:
                self._leader = None
                self._idle.notify_all()

    def _follow(self, loop: asyncio.AbstractEventLoop, call: Handover[T]) -> T:
        """Wait for the end of ``call``, handed to the thread running the loop."""
        try:
            return call.result()
        except concurrent.futures.CancelledError:
            if self._closing:  # the loop stopped under it (close() from another thread)
                raise _closed_during_the_call() from None
            raise
        except BaseException:
            if not call.done():  # interrupted while waiting: stop the work now
                with contextlib.suppress(RuntimeError):  # a loop closed: nothing runs
                    loop.call_soon_threadsafe(call.stop)
                with contextlib.suppress(BaseException):  # its end, whatever it is
                    call.result(CANCEL_WAIT)
            raise
        finally:
            self._waiting.discard(call)

    def _followed(self) -> None:
        """In the loop: a follower's call has ended."""
        with self._lock:
            self._pending -= 1
            self._stop_if_idle()

    def _followed_task(self, task: asyncio.Future[Any]) -> None:
        self._followed()

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop's own thread: drive the loop whenever it is handed the lead, until
        the loop closes."""
        while True:
            with self._lock:
                while self._leader != _LOOP_THREAD:
                    self._wake.wait()
            with contextlib.suppress(BaseException):  # a task's SystemExit: its caller's
                loop.run_forever()
            self._selector.flush()
            with self._lock:
                if self._pending <= 0:
                    self._leader = None
                    self._idle.notify_all()
                    if self._closed:
                        self._served = True
                        return

    def close(self) -> None:
        """Close the owned thing in the loop, cancel what is left, stop the loop thread
        and close the loop. Idempotent; a call waiting in another thread ends with
        ``aclose``'s error or :class:`ClientClosedError`."""
        if self._loop is not None and asyncio._get_running_loop() is self._loop:
            raise _called_inside()
        with self._lock:
            if self._closing:
                return
            self._closing = True
            loop = self._loop
        _LIVE.discard(self)
        try:
            if loop is not None:
                self.run(lambda: self._aclose(self.owned))
        finally:
            if loop is not None:
                with contextlib.suppress(BaseException):
                    self.run(_cancel_the_rest)
                with contextlib.suppress(BaseException):
                    self.run(loop.shutdown_asyncgens)
            with self._lock:
                self._closed = True  # run() refuses calls from here
            if loop is not None:
                self._shut(loop)

    def _shut(self, loop: asyncio.AbstractEventLoop) -> None:
        """Once closed: let the loop's thread go once no caller runs the loop (a fan-out
        block left open, a call handed over after the rest was cancelled: nothing more
        is served, they end with :class:`ClientClosedError`), then close the loop."""
        with self._lock:
            self._pending = 0
            if self._leader == _LOOP_THREAD:
                loop.call_soon_threadsafe(loop.stop)
            while self._leader is not None:  # a leading caller's call ends
                self._idle.wait()
            if not self._served:
                self._leader = _LOOP_THREAD  # its thread runs the loop once more, returns
                self._wake.notify()
                loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join()
        with self._lock:
            self._loop, self._leader = None, None
        for call in list(self._waiting):  # handed over as the loop stopped: never run
            call.cancel()
        loop.close()

    def _forget_parent(self) -> None:
        """In a child after fork: leave the parent's loop and owned thing be, start anew."""
        self._lock = threading.Lock()  # it may have been held by a thread not copied
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._waiting = set()  # the parent's threads' calls
        self._leader, self._pending = None, 0
        if self._loop is not None:
            _INHERITED.append((self._loop, self._thread, self.owned))
            self._loop = self._thread = None
            self.owned = self._make()
            self.generation += 1


class Held(Generic[T]):
    """An async context manager held open in the loop, for a thread's ``with`` block:
    entered and left by one task (anyio's task groups must be), the loop kept running
    meanwhile (:meth:`LoopThread.hold`), so that its work goes on between the thread's
    calls."""

    def __init__(self, loop: LoopThread[Any], cm: AbstractAsyncContextManager[T]) -> None:
        self._loop = loop
        self._cm = cm
        self._leave: asyncio.Future[tuple[Any, Any, Any]] | None = None
        self._host: asyncio.Task[bool | None] | None = None

    def __enter__(self) -> T:
        self._loop.hold()
        try:
            return self._loop.run(self._enter)
        except BaseException:
            self._loop.release()
            raise

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._loop.closed:  # closed inside the block: its work was cancelled
            return None
        try:
            return self._loop.run(functools.partial(self._exit, (typ, exc, tb)))
        finally:
            self._loop.release()

    async def _enter(self) -> T:
        loop = asyncio.get_running_loop()
        entered: asyncio.Future[T] = loop.create_future()
        self._leave = loop.create_future()
        self._host = host = loop.create_task(self._hold(entered, self._leave))
        try:
            return await asyncio.shield(entered)
        except asyncio.CancelledError:
            host.cancel()
            await asyncio.wait((host,))
            raise

    async def _hold(
        self, entered: asyncio.Future[T], leave: asyncio.Future[tuple[Any, Any, Any]]
    ) -> bool | None:
        try:
            value = await self._cm.__aenter__()
        except BaseException as exc:
            if not entered.done():
                entered.cancel() if isinstance(exc, asyncio.CancelledError) else (
                    entered.set_exception(exc)
                )
            raise
        entered.set_result(value)
        exc_info = await leave
        return await self._cm.__aexit__(*exc_info)

    async def _exit(self, exc_info: tuple[Any, Any, Any]) -> bool | None:
        assert self._leave is not None and self._host is not None
        self._leave.set_result(exc_info)
        return await self._host


async def _awaited(work: Callable[[], Awaitable[T]]) -> T:
    """``work()`` awaited in a task (so that it is called in the running loop)."""
    return await work()


def _stop_loop(task: asyncio.Future[Any]) -> None:
    task.get_loop().stop()


async def _cancel_the_rest() -> None:
    """Cancel every other task of the running loop and wait (a while) for their end."""
    me = asyncio.current_task()
    rest = [t for t in asyncio.all_tasks() if t is not me]
    for task in rest:
        task.cancel()
    if rest:
        await asyncio.wait(rest, timeout=CANCEL_WAIT)


def _called_inside() -> RuntimeError:
    return RuntimeError(
        "a SyncFlinksClient was called from inside its own event loop (in an on_event "
        "hook, say): use the async FlinksClient there"
    )


def _closed() -> ClientClosedError:
    return ClientClosedError(
        "this SyncFlinksClient is closed; open a new one (or keep one open for the life "
        "of the process: it closes itself at exit)"
    )


def _closed_during_the_call() -> ClientClosedError:
    return ClientClosedError("this SyncFlinksClient was closed during the call")


def _close_all() -> None:
    for loop in list(_LIVE):
        loop.close()


def _after_fork_in_child() -> None:
    if getattr(signal.getsignal(signal.SIGINT), "flinks_leader", False):
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a parent leader's
    for loop in list(_LIVE):
        loop._forget_parent()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)
