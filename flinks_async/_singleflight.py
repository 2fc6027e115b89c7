"""Single-flight: concurrent callers of the same work share one run of it.

The first caller (the *leader*) runs the work inline, in its own task: no task and no
future are created, and no result crosses a future, when, as almost always, nobody joins. Callers
arriving meanwhile (*followers*) wait on the run's future. The rules:

* a follower that leaves (cancelled) leaves the run to the others;
* a leader cancelled while followers wait hands the run over: the same work is started
  again in a task of its own (the work keeps its progress, see
  :class:`~flinks_async._polling.Progress`: the session and the polls done carry on), and
  the followers get its result; the leader's cancellation stands;
* the run stops when its last caller leaves: a leader alone is simply cancelled, a
  handed-over task is cancelled and awaited, so its connection is released before the
  last caller's cancellation finishes;
* a caller never joins a run that is ending (done, or whose leader is being cancelled):
  it starts a run of its own;
* :meth:`SingleFlight.aclose` (the client closing) stops every run; its callers get
  :class:`~flinks_async.ClientClosedError`.

Each caller keeps its own deadline when it passes a :class:`Caller` (the client passes
its call's :class:`~flinks_async._polling.Plan`): a follower gives up at its own
(:meth:`Caller.late`), whoever runs the work; a leader whose work reached the leader's
deadline (:meth:`Caller.expired`) while followers wait hands the run over as a
cancelled one does, and the run, told to ignore that deadline (:meth:`Caller.unbound`),
goes on while anyone waits: the followers started later each get their own deadline,
and the same session and polls carry on.

A handed-over run is a plain asyncio task on purpose: it must outlive the leader's
cancel scope, and a client may be opened and closed from different tasks (aiohttp's
``cleanup_ctx``), which rules out a task group owned by the client.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Protocol, TypeVar

import anyio

from ._errors import ClientClosedError

__all__ = ["Caller", "SingleFlight"]

T = TypeVar("T")


class Caller(Protocol):
    """A caller's own deadline, as :class:`SingleFlight` needs it."""

    def begin(self) -> float:
        """Start this caller's clock (once); when it gives up (``time.monotonic()``), or
        ``math.inf``."""

    def follow(self, run: Any) -> None:
        """This caller waits on the run of ``run`` (the leader's :class:`Caller`)."""

    def late(self) -> BaseException:
        """The error this caller raises at its deadline while the run it follows goes on."""

    def expired(self, exc: BaseException) -> bool:
        """Whether the work ended with ``exc`` because this (leading) caller's deadline
        passed: the others may still wait for it."""

    def unbound(self) -> None:
        """The run goes on for others past this caller's deadline: its work must not stop
        at it any more (the followers keep their own)."""


class _Flight:
    __slots__ = ("caller", "closed", "future", "leader", "task", "waiters", "work")

    def __init__(
        self,
        leader: asyncio.Task[Any] | None,
        work: Callable[[], Coroutine[Any, Any, Any]],
        caller: Caller | None,
    ) -> None:
        self.caller = caller  #: the leader's, whose work the run is
        #: the run's outcome, for the followers: made when the first one joins (most runs
        #: never have one, and then cost no future)
        self.future: asyncio.Future[Any] | None = None
        self.leader = leader  #: the task running the work inline (None once handed over)
        self.task: asyncio.Task[Any] | None = None  #: the handed-over run
        self.work = work
        self.waiters = 0  #: followers waiting on ``future``
        self.closed = False  #: stopped by aclose()

    def ending(self) -> bool:
        """Finished, or its leader is being cancelled: not to be joined."""
        if self.closed or (self.future is not None and self.future.done()):
            return True
        return self.task is None and self.leader is not None and self.leader.cancelling() > 0


class SingleFlight:
    """Runs at most one work per key; callers arriving meanwhile join it."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight] = {}

    def __len__(self) -> int:
        """How many shared runs are in progress."""
        return len(self._flights)

    async def run(
        self,
        key: Hashable,
        work: Callable[[], Coroutine[Any, Any, T]],
        caller: Caller | None = None,
    ) -> T:
        """Await ``work()``, or join the run already in progress under ``key``; with a
        ``caller``, give up at its own deadline (see the module docstring).

        The leader's part is written out here rather than in a helper coroutine: every
        await inside the work resumes through each frame above it."""
        flights = self._flights
        flight = flights.get(key)
        if flight is not None and not flight.ending():
            return await self._follow(key, flight, caller)  # type: ignore[no-any-return]
        if caller is not None:
            caller.begin()
        me = asyncio.current_task()
        flight = flights[key] = _Flight(me, work, caller)
        try:
            result = await work()
        except asyncio.CancelledError:
            me = None  # the task keeps its error, whose traceback holds this frame: no cycle
            if flight.closed:  # aclose() cancelled this task: report that, not a cancel
                self._end(key, flight, error=asyncio.CancelledError())
                task = asyncio.current_task()
                if task is not None and task.uncancel() == 0:
                    raise ClientClosedError(
                        "the FlinksClient was closed during this call"
                    ) from None
                raise
            if flight.waiters and flight.future is not None and not flight.future.done():
                self._hand_over(key, flight)  # others wait: the run goes on
            else:
                self._end(key, flight, error=asyncio.CancelledError())
            raise
        except BaseException as exc:
            if (
                caller is not None
                and flight.waiters
                and flight.future is not None
                and not flight.future.done()
                and caller.expired(exc)
            ):
                self._hand_over(key, flight)  # the leader's deadline, not the others'
            else:
                self._end(key, flight, error=exc)
            raise
        if flight.future is None:  # nobody joined (almost always): _end's whole work
            if flights.get(key) is flight:
                del flights[key]
            flight.leader = None
            return result
        self._end(key, flight, result=result)
        return result

    def _hand_over(self, key: Hashable, flight: _Flight) -> None:
        """The leader leaves while others wait: the run goes on in a task of its own,
        from where it stands, while anyone waits for it."""
        flight.leader = None
        if flight.caller is not None:
            flight.caller.unbound()
        flight.task = task = asyncio.get_running_loop().create_task(flight.work())
        task.add_done_callback(lambda t: self._settle(key, flight, t))

    async def _follow(self, key: Hashable, flight: _Flight, caller: Caller | None) -> Any:
        future = flight.future
        if future is None:
            future = flight.future = asyncio.get_running_loop().create_future()
        deadline = math.inf
        if caller is not None:
            deadline = caller.begin()
            caller.follow(flight.caller)
        flight.waiters += 1
        try:
            if math.isinf(deadline):
                return await asyncio.shield(future)
            timer = asyncio.timeout(max(deadline - time.monotonic(), 0.0))
            try:
                async with timer:
                    return await asyncio.shield(future)
            except TimeoutError:
                if caller is None or not timer.expired():
                    raise  # the run's own error
                raise caller.late() from None
            finally:
                del timer  # held by the error's traceback, it would hold the task: a cycle
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if future.cancelled() and me is not None and not me.cancelling():
                # the run was stopped under us (the client closed), not this caller
                raise ClientClosedError("the FlinksClient was closed during this call") from None
            raise
        finally:
            flight.waiters -= 1
            task = flight.task
            if flight.waiters == 0 and task is not None and not task.done():
                # the last caller left a handed-over run: stop it, and wait for its end
                self._drop(key, flight)
                task.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([task])

    def _drop(self, key: Hashable, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _end(
        self,
        key: Hashable,
        flight: _Flight,
        *,
        result: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """The leader's run is over: out of the table, outcome to the followers."""
        self._drop(key, flight)
        flight.leader = None  # a cancelled task's traceback holds the flight: no cycle
        future = flight.future
        if future is None or future.done():  # nobody joined, or already settled
            return
        if error is None:
            future.set_result(result)
        elif isinstance(error, Exception):
            future.set_exception(error)
            future.exception()  # retrieved: every follower gets it, the leader raises it
        else:
            future.cancel()

    def _settle(self, key: Hashable, flight: _Flight, task: asyncio.Task[Any]) -> None:
        """A handed-over run ended: its outcome to the followers."""
        self._drop(key, flight)
        if task.cancelled():
            if flight.future is not None and not flight.future.done():
                flight.future.cancel()
            return
        error = task.exception()
        self._end(key, flight, error=error, result=None if error else task.result())

    async def aclose(self) -> None:
        """Stop every run in progress and wait for them to end."""
        waits: list[asyncio.Future[Any]] = []
        for flight in list(self._flights.values()):
            flight.closed = True
            if flight.task is not None:
                flight.task.cancel()
                waits.append(flight.task)
            elif flight.leader is not None:
                if flight.future is None:  # the leader's end settles it
                    flight.future = asyncio.get_running_loop().create_future()
                if not flight.future.done():
                    flight.leader.cancel()
                    waits.append(flight.future)
        if waits:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(waits)
