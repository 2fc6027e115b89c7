"""Fan-out: pull one endpoint for many logins, one task per login in flight.

Rules of :func:`many` (and so of ``client.many`` / ``client.investments_many`` ...):

* ``login_ids`` may be any iterable or async iterable; it is read lazily, one id per free
  slot, so millions of ids are never held in memory at once.
* At most ``concurrency`` logins are in flight (an :class:`asyncio.Semaphore`: the
  client runs on asyncio, and it costs less than anyio's limiter); a login keeps its slot
  until its result has been handed to the results stream.
* Each login in flight is one plain asyncio task (not an anyio task-group child: that
  costs about 17 more garbage-collected objects per task, see the Performance page's
  capacity section); the block owns them: leaving it cancels and awaits every one.
* Results arrive in completion order through a memory object stream buffering at most
  ``concurrency`` results: a slow consumer stops new logins from starting (back-pressure)
  instead of growing memory.
* Every distinct login id ends in exactly one :class:`Result`: ``value`` on success,
  ``error`` (a :class:`FlinksError`) on failure. A failure never cancels other logins,
  unless ``fail_fast=True``: then the first failure cancels everything still running and
  is raised from the ``async for``.
* ``dedupe=True`` (default): a login id seen before (case-insensitive) is skipped, so each
  distinct login is pulled once and reported once; the results iterator counts the ids
  skipped so in ``.duplicates``. This holds every distinct id seen:
  about 113 bytes each (57 MB for 500,000 ids), without bound for an endless source.
  ``dedupe="in-flight"``: an id equal to one *in flight* is skipped, memory is bounded by
  ``concurrency``, and an id repeated later is pulled again. ``dedupe=False``: every
  occurrence gets its own result; occurrences in flight at the same time still share one
  poll (single-flight).
* An exception raised by ``login_ids`` stops the feed; the logins already in flight still
  end in their results, and then the exception is raised (bare) from the ``async for``.
* A closed client (:class:`ClientClosedError`, e.g. ``aclose()`` from another task), a
  tripped circuit breaker (:class:`ServerUnreachableError`, :class:`SetupError`: the
  first answers say the key, customer id or base URL is wrong) or Redis failing under a
  shared rate limit (:class:`CoordinationError`, without ``redis_fallback="local"``)
  cancels the logins in flight and is raised once from the ``async for``, not reported
  per login.
* Leaving the ``async with`` block (normally, by ``break`` or an exception) or cancelling
  the consumer cancels every login still in flight; their connections are closed before
  the block exits, and no task is left running. The id source is closed too (``aclose()``
  / ``close()`` of an iterator or generator given as ``login_ids``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Generic, Literal, TypeVar, cast

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream

from ._enrich_errors import PackageNotSubscribedError
from ._errors import (
    ClientClosedError,
    ConfigurationError,
    CoordinationError,
    FlinksError,
    ServerUnreachableError,
    SetupError,
)
from ._events import EventHook, scoped_hooks

__all__ = ["Result", "check_many_options", "many"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
#: Errors that no other login can escape: raised once from the ``async for``.
_ENDS_THE_FAN_OUT = (
    ClientClosedError,
    ServerUnreachableError,
    SetupError,
    CoordinationError,
    PackageNotSubscribedError,  # a fan-out is of one endpoint: the package breaker stops it
)
log = logging.getLogger("flinks_async")


@dataclasses.dataclass(frozen=True, slots=True)
class Result(Generic[T_co]):
    """The outcome of one login in a fan-out.

    Attributes:
        login_id: the login id as given.
        value: the decoded model (or bytes with ``raw=True``) on success, else ``None``.
        error: the :class:`FlinksError` on failure, else ``None``.
        elapsed: seconds from the login's start to its result.
    """

    login_id: str
    value: T_co | None = None
    error: FlinksError | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the login succeeded."""
        return self.error is None


class _Results(Generic[T]):
    """The async iterator handed to the ``async with`` body."""

    def __init__(
        self,
        receive: MemoryObjectReceiveStream[Result[T]],
        stop: Callable[[], None],
        fail_fast: bool,
    ) -> None:
        self._receive = receive
        self._stop = stop
        self._fail_fast = fail_fast
        #: raised once every result is delivered: what stopped the feed (from login_ids)
        self.feed_error: BaseException | None = None
        #: login ids skipped as repeats of one seen before (``dedupe``), so far
        self.duplicates = 0

    def __aiter__(self) -> AsyncIterator[Result[T]]:
        return self

    async def __anext__(self) -> Result[T]:
        try:
            try:
                result = self._receive.receive_nowait()
            except anyio.WouldBlock:
                result = await self._receive.receive()
        except anyio.EndOfStream:
            if self.feed_error is not None:
                error, self.feed_error = self.feed_error, None
                raise error from None
            raise StopAsyncIteration from None
        if result.error is not None and (
            self._fail_fast or isinstance(result.error, _ENDS_THE_FAN_OUT)
        ):
            self._stop()
            raise result.error
        return result


async def _close_source(iterator: object) -> None:
    """Close an iterator or generator we consumed (``async for`` does not on ``break``)."""
    with anyio.CancelScope(shield=True):
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
        elif (close := getattr(iterator, "close", None)) is not None:
            close()


def check_many_options(concurrency: object, dedupe: object) -> None:
    """:class:`ConfigurationError` for a ``concurrency`` or ``dedupe`` :func:`many` can't take."""
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
    if dedupe not in (True, False, "in-flight"):
        raise ConfigurationError(f'dedupe must be True, False or "in-flight", got {dedupe!r}')


def _unexpected(login_id: str, exc: Exception, endpoint: str | None) -> FlinksError:
    """A bug must not lose the login: ``exc`` as a :class:`FlinksError`, its result."""
    log.exception("unexpected error for a login; reported as its result")
    error = FlinksError(
        f"unexpected {type(exc).__name__}: {exc}",
        login_id=login_id if isinstance(login_id, str) else None,
        endpoint=endpoint,
    )
    error.__cause__ = exc
    return error


class _FanOut(Generic[T]):
    """One :func:`many` run: its slots, its workers (one task per login in flight), and
    the stream they hand their results to."""

    __slots__ = (
        "active",
        "dedupe",
        "endpoint",
        "fed",
        "hooks",
        "in_flight",
        "one",
        "receive",
        "scope",
        "send",
        "slots",
        "workers",
    )

    def __init__(
        self,
        one: Callable[[str], Awaitable[T]],
        concurrency: int,
        dedupe: bool | Literal["in-flight"],
        hooks: tuple[EventHook, ...],
        endpoint: str | None,
    ) -> None:
        self.one, self.dedupe, self.hooks, self.endpoint = one, dedupe, hooks, endpoint
        self.send, self.receive = anyio.create_memory_object_stream[Result[T]](concurrency)
        self.slots = asyncio.Semaphore(concurrency)
        # Workers share `send`; it closes (ending the consumer's iteration) once the feed
        # is done and the last worker has handed over its result.
        self.active = 0
        self.fed = False
        self.in_flight: set[object] | None = set() if dedupe == "in-flight" else None
        self.workers: set[asyncio.Task[None]] = set()
        self.scope: anyio.CancelScope | None = None  # the feed's (the task group's)

    def _worker_done(self) -> None:
        self.active -= 1
        if self.fed and self.active == 0:
            self.send.close()

    async def worker(self, login_id: str, key: object) -> None:
        task = cast("asyncio.Task[None]", asyncio.current_task())
        result: Result[T] | None = None
        error: FlinksError | None = None
        try:
            if self.hooks:  # the client emits started/done/...; this task's context only
                scoped_hooks.set(self.hooks)
            started = time.monotonic()
            try:
                value = await self.one(login_id)
                result = Result(login_id, value=value, elapsed=time.monotonic() - started)
            except FlinksError as exc:  # ClientClosedError too: the consumer raises it
                result = Result(login_id, error=exc, elapsed=time.monotonic() - started)
            except Exception as exc:
                error = _unexpected(login_id, exc, self.endpoint)
                result = Result(login_id, error=error, elapsed=time.monotonic() - started)
            try:
                self.send.send_nowait(result)  # the buffer holds `concurrency`: room, but
            except anyio.WouldBlock:  # for a consumer that stopped reading
                await self.send.send(result)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # the block was left: nobody reads results any more (we are cancelled)
        except asyncio.CancelledError:
            # Only the block cancels a worker (nobody else holds it), and the block waits
            # for it: end here rather than keep the CancelledError, whose traceback would
            # hold every frame of the login (and all they reference) until the block has
            # waited for the last worker: at 50,000 in flight, a young generation of
            # hundreds of thousands of objects for the GC to walk.
            if not task.cancelling():
                raise  # not the block's cancellation: let it show
            return
        finally:
            # an error's traceback holds this frame: the frame must not hold the error (a
            # cycle the consumer's Result would leave for the GC)
            result = error = None
            self.workers.discard(task)  # not a done callback: one loop callback less per login
            if self.in_flight is not None:
                self.in_flight.discard(key)
            self.slots.release()
            self._worker_done()

    async def feed(
        self, login_ids: Iterable[str] | AsyncIterable[str], results: _Results[T]
    ) -> None:
        seen: set[object] | None = set() if self.dedupe is True else self.in_flight
        is_async = isinstance(login_ids, AsyncIterable)
        source: Any = aiter(login_ids) if is_async else iter(login_ids)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    login_id = await anext(source) if is_async else next(source)
                except (StopIteration, StopAsyncIteration):
                    break
                except Exception as exc:  # the id source failed: report it after the results
                    results.feed_error = exc
                    break
                key = login_id.lower() if isinstance(login_id, str) else login_id
                if seen is not None:
                    if key in seen:
                        results.duplicates += 1
                        continue
                    seen.add(key)
                # asyncio's semaphore does not check for cancellation when a slot is free:
                # without this a cancelled fan-out would go on starting (and cancelling)
                # workers for as long as the id source yields
                await anyio.lowlevel.checkpoint_if_cancelled()
                await self.slots.acquire()
                self.active += 1
                self.workers.add(loop.create_task(self.worker(login_id, key)))
        finally:
            self.fed = True
            if self.active == 0:
                self.send.close()
            if source is login_ids:  # an iterator or generator we were handed: ours to close
                await _close_source(source)

    def cancel_workers(self) -> None:
        for task in self.workers:
            if not task.cancelling():  # once each: stop() may come twice
                task.cancel()

    def stop(self) -> None:
        """Stop the feed and cancel every login in flight."""
        if self.scope is not None:
            self.scope.cancel()
        self.cancel_workers()

    async def end(self) -> None:
        """The workers are ours: none outlives the block, whatever ended it. A worker
        leaves ``workers`` as it ends; those left were cancelled before they first ran."""
        self.cancel_workers()
        if self.workers:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(list(self.workers))


@asynccontextmanager
async def many(
    one: Callable[[str], Awaitable[T]],
    login_ids: Iterable[str] | AsyncIterable[str],
    *,
    concurrency: int = 50,
    fail_fast: bool = False,
    dedupe: bool | Literal["in-flight"] = True,
    on_event: EventHook | None = None,
    endpoint: str | None = None,
) -> AsyncIterator[AsyncIterator[Result[T]]]:
    """Run ``one(login_id)`` for every login id (see the module docstring for the rules)."""
    check_many_options(concurrency, dedupe)
    hooks: tuple[EventHook, ...] = (on_event,) if on_event else ()
    run = _FanOut(one, concurrency, dedupe, hooks, endpoint)
    body_error: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg, run.send, run.receive:
            run.scope = tg.cancel_scope
            results = _Results(run.receive, run.stop, fail_fast)
            tg.start_soon(run.feed, login_ids, results)
            try:
                yield results
            except BaseException as exc:  # re-raised bare below, not in an ExceptionGroup
                body_error = exc
            finally:
                run.stop()
    finally:
        await run.end()
    if body_error is not None:
        raise body_error
