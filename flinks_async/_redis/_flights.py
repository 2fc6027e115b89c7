"""Single-flight across processes: a login asked for by several processes at once is
authorized and polled once, and every caller gets its answer, or its failure.

The first process takes a **lease** (``SET NX PX``, renewed every third of its length while
the work runs, by a check-and-extend script so a lapsed owner cannot renew another's
lease; one script renews every lease a process holds); the others wait, asking Redis every
``poll`` seconds. Arriving is one script (the stored outcome, else the lease if free, else
"wait"), shared by every call of the process arriving meanwhile
(:class:`~flinks_async._redis._batch.Batched`). When the work ends, the owner stores its
outcome and gives the lease back, in one script (also shared):

* the 200 body, for ``result_ttl`` seconds (at most ``max_result_bytes``; over that, a
  marker telling the waiters to pull it themselves);
* a Flinks error (:class:`~flinks_async.LoginError`, :class:`~flinks_async.SessionExpiredError`,
  ...) as its class and fields (never a login id: each waiter fills in its own), for
  ``error_ttl`` seconds: long enough for every waiter to see it, short enough that a later
  call tries again. Each waiter raises the same typed error.

Every caller gives up at **its own** deadline (``poll_timeout`` from when its call began)
with :class:`~flinks_async.PollTimeoutError`, whoever owns the lease: an owner reaching its
deadline does not share its ``PollTimeoutError`` (it is that caller's, not the login's) but
gives the lease back, and a waiter whose deadline is later takes the run over **with the
same RequestId**: no second Authorize, polling from where it stood. The owner records the
RequestId its run polls (once the first data request was answered) beside the lease, at
each renewal and when it gives the lease back, kept three leases (``resume_ms``); the
caller taking the lease gets it, and the owner that stores an outcome forgets it. So
the same happens when the owner is cancelled (it gives the lease back at once) or dies
(kill -9: its lease lapses within ``lease`` seconds; a run killed before its process's
next renewal, at most a third of a lease, had not recorded its RequestId yet and the
taker authorizes anew). Waiters learn the RequestId too, and put it in their own
``PollTimeoutError`` (``request_id``) for a later call to resume. Key names hold a hash
of the call (endpoint, login id, options), never a login id.

Defaults (:func:`flinks_async._coordination.build`): ``LEASE`` 5 s, ``RESULT_TTL`` 15 s (a
result is personal data: it never stays longer), ``ERROR_TTL`` 2 s, ``MAX_RESULT_BYTES``
4 MiB, ``WAIT_POLL`` 0.1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from .. import _errors
from .._coordination import FlightDeadline, Progress
from .._errors import CoordinationError, FlinksError
from . import _scripts
from ._batch import Batched
from ._connection import guarded, redis_errors

__all__ = [
    "ERROR_TTL",
    "LEASE",
    "MAX_RESULT_BYTES",
    "RESULT_TTL",
    "RETRY_EVERY",
    "TOO_LARGE",
    "WAIT_POLL",
    "RedisFlights",
]

log = logging.getLogger("flinks_async")

LEASE = 5.0
RESULT_TTL = 15.0
ERROR_TTL = 2.0
MAX_RESULT_BYTES = 4 * 1024 * 1024
WAIT_POLL = 0.1
#: while Redis is away (fallback on): how often a call asks it again (seconds)
RETRY_EVERY = 1.0

#: stored instead of a result over ``max_result_bytes``: waiters then pull it themselves
TOO_LARGE = b"\x00flinks-async:too-large"
#: stored instead of a result when the owner's run failed; followed by the error as JSON
FAILED = b"\x00flinks-async:failed:"

#: errors that are the call's own business, not the login's: never shared
_NOT_SHARED: tuple[type[FlinksError], ...] = (
    _errors.ClientClosedError,
    _errors.CoordinationError,
    _errors.ConfigurationError,
    _errors.InvalidLoginIdError,
    _errors.MFARequiredError,  # carries the questions: each caller asks for its own
    _errors.PollTimeoutError,  # the caller's own deadline: a later waiter polls on
)


def encode_error(exc: FlinksError) -> bytes | None:
    """``exc`` as stored for the waiters (:data:`FAILED` + JSON), or None when it is not to
    be shared. Only plain fields travel (no login id, no nested objects)."""
    if isinstance(exc, _NOT_SHARED) or getattr(_errors, type(exc).__name__, None) is not type(exc):
        return None
    state = {
        k: v
        for k, v in exc.__dict__.items()
        if k != "login_id"
        and (
            v is None
            or isinstance(v, str | int | float | bool)
            or (isinstance(v, list) and all(isinstance(i, str) for i in v))
        )
    }
    return FAILED + msgspec.json.encode({"type": type(exc).__name__, "state": state})


def _resumable(progress: Progress | None) -> str:
    """The RequestId a taker of the run resumes (its first data request was answered), or
    '' (a taker authorizes anew)."""
    if progress is None or not progress.posted:
        return ""
    return progress.request_id or ""


def decode_error(stored: bytes, login_id: str) -> FlinksError:
    """The error a waiter raises for ``stored`` (see :func:`encode_error`)."""
    try:
        doc = msgspec.json.decode(stored[len(FAILED) :])
        cls = getattr(_errors, doc["type"])
        state = dict(doc["state"])
        if not (isinstance(cls, type) and issubclass(cls, FlinksError)):
            raise TypeError(doc["type"])
    except Exception:
        return CoordinationError("the run this call waited on failed, and its error is unreadable")
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    if isinstance(err, _errors.SchemaDriftError) and "drift" not in state:
        err.drift = []
    err.login_id = login_id
    return err


class RedisFlights:
    """Single-flight across processes (see the module docstring)."""

    def __init__(
        self,
        redis: Any,
        *,
        shown_url: str,
        customer_id: str,
        fallback: bool,
        lease: float = LEASE,
        result_ttl: float = RESULT_TTL,
        error_ttl: float = ERROR_TTL,
        max_result_bytes: int = MAX_RESULT_BYTES,
        poll: float = WAIT_POLL,
    ) -> None:
        self.url = shown_url
        self.prefix = f"flinks-async:{customer_id}:flight:"
        self.lease = lease
        self.result_ttl = result_ttl
        self.error_ttl = error_ttl
        self.max_result_bytes = max_result_bytes
        self.poll = poll
        #: how long a run's RequestId stays for a taker after its owner's last word (ms)
        self.resume_ms = int(lease * 3 * 1000)
        self.fallback = fallback
        self._away = False  # Redis was found unavailable (logged once)
        self._retry_at = 0.0  # while away: when to ask Redis again
        self._trouble = False  # a failure to share was logged (once per outage)
        self._redis = redis
        self._renew = redis.register_script(_scripts.RENEW_LEASES)
        self._release = redis.register_script(_scripts.RELEASE_LEASE)
        self._arrive_script = redis.register_script(_scripts.LEASE_OR_RESULT)
        self._store_script = redis.register_script(_scripts.STORE_AND_RELEASE)
        #: one script for every caller arriving meanwhile, one for every outcome stored
        self._arrive = Batched(self._arrive_many, orphan=self._arrived_for_nobody)
        self._store_many = Batched(self._store_all)
        #: lease key -> (token, RequestId key, the run's progress), renewed by _keep
        self._owned: dict[str, tuple[str, str, Progress | None]] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    async def _arrive_many(self, calls: list[tuple[str, str, str, str]]) -> list[Any]:
        """``LEASE_OR_RESULT`` for (lease key, result key, RequestId key, token) of several
        calls."""
        keys = [k for *three, _ in calls for k in three]
        args = [int(self.lease * 1000), *(token for *_, token in calls)]
        found: list[Any] = await guarded(self._arrive_script(keys=keys, args=args))
        return found

    def _arrived_for_nobody(self, call: tuple[str, str, str, str], found: Any) -> None:
        """A caller cancelled while its arrival was on the way: a lease taken for it is
        given back at once (a waiter then runs the work)."""
        if found[0] == 0:
            self._give_up_soon(call[0], call[2], call[3], None)

    async def _store_all(self, outcomes: list[tuple[str, str, str, str, bytes, int]]) -> list[None]:
        """``STORE_AND_RELEASE`` for (lease key, result key, RequestId key, token, outcome,
        ttl ms) of several calls."""
        keys = [k for *three, _, _, _ in outcomes for k in three]
        args = [a for *_, token, stored, ttl in outcomes for a in (token, stored, ttl)]
        await guarded(self._store_script(keys=keys, args=args))
        return [None] * len(outcomes)

    async def run(
        self,
        key: object,
        work: Callable[[], Awaitable[bytes]],
        *,
        login_id: str,
        deadline: float | None = None,
        progress: Progress | None = None,
    ) -> bytes:
        """The 200 body of ``work()``, run once among every process sharing this Redis.

        ``deadline`` (``time.monotonic()``): when this caller stops waiting for another
        process's run (:class:`FlightDeadline`). ``progress``: the run's RequestId, shared
        for a taker, and where a run taken over resumes (its ``request_id`` and ``posted``
        are set before ``work()``). Raises the owner's error when its run failed with a
        Flinks error.
        """
        if self._away and time.monotonic() < self._retry_at:
            return await work()  # fallen back: this process's own until the next try
        name = hashlib.sha256(repr(key).encode()).hexdigest()[:40]
        base = f"{self.prefix}{name}"
        lease_key, result_key, rid_key = f"{base}:lease", f"{base}:result", f"{base}:rid"
        token = secrets.token_hex(8)
        try:
            done, found = await self._wait_or_lease(
                (lease_key, result_key, rid_key, token), deadline
            )
        except FlightDeadline:
            raise
        except (OSError, TimeoutError, redis_errors()) as exc:
            return await self._unavailable(exc, work)
        if not done:  # the lease is ours: run the work, from where an earlier owner left it
            if found and progress is not None:
                progress.request_id, progress.posted = found.decode(), True
            return await self._own(lease_key, result_key, rid_key, token, work, progress)
        cached = found
        if cached == TOO_LARGE:
            return await work()
        if cached.startswith(FAILED):
            raise decode_error(cached, login_id)
        return cached

    async def _wait_or_lease(
        self, call: tuple[str, str, str, str], deadline: float | None
    ) -> tuple[bool, bytes]:
        """Wait until an outcome is stored (``(True, outcome)``) or the lease is ours
        (``(False, the RequestId to resume, or b"")``). Only Redis' own errors and
        :class:`FlightDeadline` come out of here."""
        while True:
            found = await self._arrive(call)
            if self._away or self._trouble:
                self._away = self._trouble = False
                log.warning("single-flight: Redis at %s answers again: shared", self.url)
            if found[0] != 2:
                return found[0] == 1, found[1]
            pause = self.poll * random.uniform(0.8, 1.2)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FlightDeadline(found[1].decode() or None)
                pause = min(pause, left)
            await asyncio.sleep(pause)

    async def _own(
        self,
        lease_key: str,
        result_key: str,
        rid_key: str,
        token: str,
        work: Callable[[], Awaitable[bytes]],
        progress: Progress | None,
    ) -> bytes:
        self._owned[lease_key] = (token, rid_key, progress)
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep())
        keys = (lease_key, result_key, rid_key, token)
        try:
            body = await work()
        except FlinksError as exc:
            self._owned.pop(lease_key, None)
            stored = encode_error(exc)
            if stored is None:  # this caller's own end (its deadline...): a waiter goes on
                self._give_up_soon(lease_key, token, rid_key, progress)
            else:
                await self._store(keys, stored, self.error_ttl)
            raise
        except BaseException:
            self._owned.pop(lease_key, None)
            self._give_up_soon(lease_key, token, rid_key, progress)
            raise
        self._owned.pop(lease_key, None)
        stored = body if len(body) <= self.max_result_bytes else TOO_LARGE
        await self._store(keys, stored, self.result_ttl)
        return body

    async def _store(self, keys: tuple[str, str, str, str], stored: bytes, ttl: float) -> None:
        try:
            await self._store_many((*keys, stored, int(ttl * 1000)))
        except (OSError, TimeoutError, redis_errors()) as exc:
            # our caller has its outcome; waiters take the lease over when it lapses
            if not (self._trouble or self._away):
                self._trouble = True
                log.warning(
                    "single-flight: could not share an outcome through Redis at %s (%s)",
                    self.url,
                    type(exc).__name__,
                )

    def _give_up_soon(
        self, lease_key: str, token: str, rid_key: str, progress: Progress | None
    ) -> None:
        """Give the lease back, leaving the run's RequestId for the waiter that takes it
        over, without waiting: this may be a cancellation, and the lease lapses by itself
        anyway."""
        args = [token, _resumable(progress), self.resume_ms]
        task = asyncio.get_running_loop().create_task(self._give_up(lease_key, rid_key, args))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _give_up(self, lease_key: str, rid_key: str, args: list[Any]) -> None:
        with contextlib.suppress(Exception):
            await guarded(self._release(keys=[lease_key, rid_key], args=args))

    async def _keep(self) -> None:
        """Every third of a lease's length, renew every lease this process holds (one
        script for them all), while it holds any."""
        try:
            while self._owned:
                await asyncio.sleep(self.lease / 3)
                owned = list(self._owned.items())
                if owned:
                    keys = [k for lease_key, (_, rid_key, _) in owned for k in (lease_key, rid_key)]
                    args: list[Any] = [int(self.lease * 1000), self.resume_ms]
                    for _, (token, _, progress) in owned:
                        args += (token, _resumable(progress))
                    with contextlib.suppress(OSError, TimeoutError, redis_errors()):
                        await guarded(self._renew(keys=keys, args=args))
        finally:
            self._keeper = None

    async def _unavailable(self, exc: BaseException, work: Callable[[], Awaitable[bytes]]) -> bytes:
        if not self.fallback:
            raise CoordinationError(
                f"Redis at {self.url} is unavailable for the shared single-flight: "
                f"{type(exc).__name__}"
            ) from None
        if not (self._away or self._trouble):
            log.warning(
                "single-flight: Redis at %s is unavailable (%s): this process's own until "
                "Redis answers again (redis_fallback='local')",
                self.url,
                type(exc).__name__,
            )
        self._away = True
        self._retry_at = time.monotonic() + RETRY_EVERY
        return await work()

    async def aclose(self) -> None:
        """Stop renewing; wait for the lease give-backs in flight (2 s at most)."""
        if self._keeper is not None:
            self._keeper.cancel()
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=2)
