"""How a call reaches a loop that another thread runs, for :mod:`~flinks_async._portal`.

* :class:`Handover`: one call handed to the loop with ``call_soon_threadsafe``; its caller
  waits on it (an :class:`Outcome`: a lock), set once the call's task has ended.
* :class:`WakeBeforeWaiting`: the loop's selector, which wakes the threads whose calls
  have ended just before the loop waits for I/O.
* :class:`SigintCancels`: Ctrl-C in a main thread running the loop cancels its call, as
  :class:`asyncio.Runner` does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import selectors
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Handover", "Outcome", "SigintCancels", "Wake", "WakeBeforeWaiting"]

T = TypeVar("T")


_select = selectors.DefaultSelector.select

try:  # signal's C functions (see SigintCancels); typeshed has no stub for them
    _signals: Any = importlib.import_module("_signal")
except ImportError:  # pragma: no cover  (not CPython)
    _signals = signal
_SIGINT = int(signal.SIGINT)


class Wake(Protocol):
    """What :class:`WakeBeforeWaiting` defers: its ``wake()`` wakes a waiting thread."""

    def wake(self) -> None: ...


class WakeBeforeWaiting(selectors.DefaultSelector):
    """The loop's selector, which wakes the threads waiting on calls that have ended
    (``wakes``) just before the loop waits for I/O, or after ``MAX_DEFERRED`` turns of
    the loop at most, all at once.

    Woken while the loop's thread holds the GIL and goes on, a waiting thread would wake
    only to wait for the GIL, and the loop's thread be switched out for nothing: two
    context switches wasted per call (32 threads sharing a client). Woken as the loop
    waits, it finds the GIL free."""

    MAX_DEFERRED = 4

    def __init__(self) -> None:
        super().__init__()
        self.wakes: list[Wake] = []
        self._turns = 0  # selects since the oldest wake was deferred

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.wakes:
            self._turns += 1
            if timeout != 0 or self._turns > self.MAX_DEFERRED:
                self.flush()
        return _select(self, timeout)

    def defer(self, wake: Wake) -> None:
        """In the loop: wake a thread (call ``wake.wake()``) before the loop next waits."""
        self.wakes.append(wake)

    def flush(self) -> None:
        """Wake every thread deferred so far (the loop's thread, when it stops running it)."""
        wakes, self.wakes, self._turns = self.wakes, [], 0
        for wake in wakes:
            wake.wake()


class SigintCancels:
    """While a main thread runs the loop (with Python's own SIGINT handler in place): a
    first Ctrl-C cancels ``task`` (its cleanup runs in the loop), a second one raises
    ``KeyboardInterrupt`` at once, as :class:`asyncio.Runner` does. ``count``: the
    Ctrl-Cs seen. In any other thread, or under another handler, it does nothing.

    It is its own handler, installed and put back with the C functions of ``signal``
    (``_signal``): ``signal.signal()`` and ``signal.getsignal()`` look each handler up
    among the module's enums, which raised and caught a ``ValueError`` each time: about
    15 µs per call led by a script's main thread."""

    __slots__ = ("count", "installed", "task")

    #: marks the handler as a leading caller's (the fork hook puts Python's back)
    flinks_leader = True

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.count = 0
        self.installed = False

    def __enter__(self) -> SigintCancels:
        if (
            threading.current_thread() is threading.main_thread()
            and _signals.getsignal(_SIGINT) is signal.default_int_handler
        ):
            _signals.signal(_SIGINT, self)
            self.installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.installed and _signals.getsignal(_SIGINT) is self:
            _signals.signal(_SIGINT, signal.default_int_handler)

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1
        task = self.task
        if self.count == 1 and not task.done():
            task.cancel()
            task.get_loop().call_soon_threadsafe(_nothing)  # wake its select() now
            return
        raise KeyboardInterrupt


def _nothing() -> None:
    pass


class Outcome(Generic[T]):
    """How a handed-over call ended, for the one thread waiting on it: a lock held until
    then. A :class:`concurrent.futures.Future` without its condition, re-entrant lock and
    waiter list (four objects for the cyclic GC to track per call, and their CPU), which
    only matter for many waiters. The first outcome set wins (``close()`` cancels what the
    loop never ran)."""

    __slots__ = ("_lock", "_state", "_value")

    PENDING, RESULT, ERROR, CANCELLED = range(4)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._state = self.PENDING
        self._value: Any = None

    def done(self) -> bool:
        return self._state != self.PENDING

    def _set(self, state: int, value: object) -> None:
        if self._state == self.PENDING:
            self._state, self._value = state, value
            self._lock.release()

    def set_result(self, value: T) -> None:
        self._set(self.RESULT, value)

    def set_exception(self, exc: BaseException) -> None:
        self._set(self.ERROR, exc)

    def cancel(self) -> None:
        self._set(self.CANCELLED, None)

    def result(self, timeout: float | None = None) -> T:
        """Wait for the outcome (``timeout`` seconds at most: :class:`TimeoutError`); the
        result, or the exception raised, or :class:`concurrent.futures.CancelledError`."""
        if self._state == self.PENDING:
            if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
                raise TimeoutError
            self._lock.release()  # (a second result() returns at once)
        if self._state == self.RESULT:
            return self._value  # type: ignore[no-any-return]
        if self._state == self.ERROR:
            raise self._value
        raise concurrent.futures.CancelledError


class Handover(Outcome[T]):
    """One call handed to the loop, and its outcome (what its caller waits on), set when
    the call's task has ended (so a cancelled call's caller waits for its cleanup);
    ``ended()`` is called in the loop once it has.

    Cheaper than :func:`asyncio.run_coroutine_threadsafe` (no chained futures, no wrapper
    coroutine, no event to wait on after a cancel): the handover is what 32 threads
    sharing a client pay for each call. It is itself the callback handed to the loop, the
    wake its selector defers and the outcome: a call makes two bound methods where it made
    five, no partial and no separate outcome, objects the cyclic GC counts."""

    __slots__ = ("cancelled", "ended", "loop", "selector", "task", "work")

    def __init__(
        self,
        work: Callable[[], Awaitable[T]],
        loop: asyncio.AbstractEventLoop,
        ended: Callable[[], None],
        selector: WakeBeforeWaiting,
    ) -> None:
        super().__init__()
        self.work: Callable[[], Awaitable[T]] | None = work
        self.loop = loop
        self.ended = ended
        self.selector = selector
        self.task: asyncio.Future[T] | None = None
        self.cancelled = False

    def __call__(self) -> None:
        """In the loop: start the task (not when cancelled before it started)."""
        if self.cancelled:
            self.ended()
            self.cancel()
            return
        assert self.work is not None
        try:
            self.task = task = asyncio.ensure_future(self.work(), loop=self.loop)
        except BaseException as exc:  # work() itself raised: no task to wait for
            self.ended()
            self.set_exception(exc)
            return
        task.add_done_callback(self._ended)

    def stop(self) -> None:
        """In the loop: cancel the task (or keep it from starting)."""
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()

    def _ended(self, task: asyncio.Future[T]) -> None:
        """In the loop: the task has ended; its caller is woken before the loop waits."""
        self.selector.defer(self)

    def wake(self) -> None:
        """In the loop, as it is about to wait: set the outcome (wakes the caller)."""
        self.ended()
        task = self.task
        assert task is not None
        self.task = self.work = None  # freed in the loop's thread, not in the caller's
        if task.cancelled():
            self.cancel()
        elif (exc := task.exception()) is not None:
            self.set_exception(exc)
        else:
            self.set_result(task.result())
