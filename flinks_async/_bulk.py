"""Fan-out: pull one endpoint for many logins, one task per login in flight.

Rules of :func:`many` (and so of ``client.many`` / ``client.investments_many`` ...):

* ``login_ids`` may be any iterable or async iterable; it is read lazily, one id per free
  slot, so millions of ids are never held in memory at once.
* At most ``concurrency`` logins are in flight (an :class:`anyio.CapacityLimiter`); a login
  keeps its slot until its result has been handed to the results stream.
* Results arrive in completion order through a memory object stream buffering at most
  ``concurrency`` results: a slow consumer stops new logins from starting (back-pressure)
  instead of growing memory.
* Every distinct login id ends in exactly one :class:`Result`: ``value`` on success,
  ``error`` (a :class:`FlinksError`) on failure. A failure never cancels other logins,
  unless ``fail_fast=True``: then the first failure cancels everything still running and
  is raised from the ``async for``.
* ``dedupe=True`` (default): a login id seen before (case-insensitive) is skipped, so each
  distinct login is pulled once and reported once. The set of seen ids costs about 100
  bytes per distinct id. ``dedupe=False``: every occurrence gets its own result;
  occurrences in flight at the same time still share one poll (single-flight).
* Leaving the ``async with`` block (normally, by ``break`` or an exception) or cancelling
  the consumer cancels every login still in flight; their connections are closed before
  the block exits, and no task is left running.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from ._errors import FlinksError
from ._events import EventHook, scoped_hooks

__all__ = ["Result", "many"]

T = TypeVar("T")
log = logging.getLogger("flinks_async")


@dataclasses.dataclass(frozen=True, slots=True)
class Result(Generic[T]):
    """The outcome of one login in a fan-out.

    Attributes:
        login_id: the login id as given.
        value: the decoded model (or bytes with ``raw=True``) on success, else ``None``.
        error: the :class:`FlinksError` on failure, else ``None``.
        elapsed: seconds from the login's start to its result.
    """

    login_id: str
    value: T | None = None
    error: FlinksError | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the login succeeded."""
        return self.error is None


class _Results(Generic[T]):
    """The async iterator handed to the ``async with`` body."""

    def __init__(
        self, receive: MemoryObjectReceiveStream[Result[T]], tg: TaskGroup, fail_fast: bool
    ) -> None:
        self._receive = receive
        self._tg = tg
        self._fail_fast = fail_fast

    def __aiter__(self) -> AsyncIterator[Result[T]]:
        return self

    async def __anext__(self) -> Result[T]:
        try:
            result = await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        if self._fail_fast and result.error is not None:
            self._tg.cancel_scope.cancel()
            raise result.error
        return result


async def _aiter(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


@asynccontextmanager
async def many(
    one: Callable[[str], Awaitable[T]],
    login_ids: Iterable[str] | AsyncIterable[str],
    *,
    concurrency: int = 50,
    fail_fast: bool = False,
    dedupe: bool = True,
    on_event: EventHook | None = None,
    endpoint: str | None = None,
) -> AsyncIterator[AsyncIterator[Result[T]]]:
    """Run ``one(login_id)`` for every login id (see the module docstring for the rules)."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    send, receive = anyio.create_memory_object_stream[Result[T]](concurrency)
    limiter = anyio.CapacityLimiter(concurrency)
    hooks: tuple[EventHook, ...] = (on_event,) if on_event else ()

    # Workers share `send`; it closes (ending the consumer's iteration) once the feed is
    # done and the last worker has handed over its result.
    active = 0
    fed = False

    def worker_done() -> None:
        nonlocal active
        active -= 1
        if fed and active == 0:
            send.close()

    async def worker(login_id: str, slot: object) -> None:
        try:
            if hooks:  # the client emits started/done/...; this task's context only
                scoped_hooks.set(hooks)
            started = time.monotonic()
            try:
                result = Result(
                    login_id, value=await one(login_id), elapsed=time.monotonic() - started
                )
            except FlinksError as exc:
                result = Result(login_id, error=exc, elapsed=time.monotonic() - started)
            except Exception as exc:  # a bug must not lose the login: report it
                log.exception("unexpected error for a login; reported as its result")
                error = FlinksError(
                    f"unexpected {type(exc).__name__}: {exc}",
                    login_id=login_id if isinstance(login_id, str) else None,
                    endpoint=endpoint,
                )
                error.__cause__ = exc
                result = Result(login_id, error=error, elapsed=time.monotonic() - started)
            await send.send(result)
        finally:
            limiter.release_on_behalf_of(slot)
            worker_done()

    async def feed(tg: TaskGroup) -> None:
        nonlocal active, fed
        seen: set[object] | None = set() if dedupe else None
        try:
            async for login_id in _aiter(login_ids):
                if seen is not None:
                    key = login_id.lower() if isinstance(login_id, str) else login_id
                    if key in seen:
                        continue
                    seen.add(key)
                slot = object()
                await limiter.acquire_on_behalf_of(slot)
                active += 1
                tg.start_soon(worker, login_id, slot)
        finally:
            fed = True
            if active == 0:
                send.close()

    body_error: BaseException | None = None
    async with anyio.create_task_group() as tg, send, receive:
        tg.start_soon(feed, tg)
        try:
            yield _Results(receive, tg, fail_fast)
        except BaseException as exc:  # re-raised bare below, not in an ExceptionGroup
            body_error = exc
        finally:
            tg.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
