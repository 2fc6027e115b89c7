"""Coordination between processes on Redis (``pip install 'flinks-async[redis]'``,
``redis_url=`` / ``FLINKS_REDIS_URL``): every client of a customer id on that Redis shares
one ``rate_limit`` (:class:`RedisRateLimiter`) and one single-flight table
(:class:`RedisFlights`: a login asked for by several processes at once is authorized and
polled once).

The shared rate limit keeps the promise of the in-process one (:mod:`flinks_async._ratelimit`)
across processes: **at most N requests arrive at Flinks in any window of
``rate_limit_window`` seconds**, counted over every process using the same Redis and
customer id, retries, polls and token requests included. The scheme is the same: a request
occupies a slot from before it is sent until ``window`` after its answer began (or it
failed, or was cancelled), and a request starts only while fewer than N slots are
occupied. The slots live in one Redis sorted set,
``flinks-async:{customer_id}:rate-limit``, member = a random token, score = when the slot
frees (Redis' own clock, ``TIME``, so the processes' clocks never matter):

* **take** (one Lua script, atomic): drop the members whose time has passed; if fewer than
  N remain, add ours with score ``now + hold`` and succeed; else answer how long until the
  earliest slot frees;
* **give back**: set our member's score to ``now + window``.

``hold`` = ``connect_timeout + window``: a slot whose process died (kill -9) frees by
itself after at most that long, and a live request's slot is re-scored when its answer
begins. The proof of the in-process limiter needs the request to arrive between the take
and the give-back; a request that has not arrived ``connect_timeout`` after being sent has
failed to connect, so it never arrives.

Why not the ``limits`` package (its moving window on Redis): it counts requests as they
*start*. Answers take different times, so starts one second apart can arrive closer
together: v0.1's in-process limiter did exactly that and let 1.8x the limit reach the
server in one second (see the changelog). The arrival bound needs a slot held until the
answer, which a counter of starts cannot express. The script is run through redis-py's
``Script`` (``EVALSHA``, loaded once).

Waiting: within a process, callers queue FIFO on an ``asyncio.Lock`` and only the head asks
Redis, so N processes each contribute one waiter; the head asks again after the time
Redis says (at most 20 ms, plus up to 5 ms jitter so processes do not ask in step). That
is fair enough that no process starves (each gets a turn at every freed slot, in no fixed
order), not FIFO across processes.

Every Redis operation has a timeout (``socket_timeout`` / ``socket_connect_timeout`` =
``coordination_timeout``, default 2 s). Unreachable Redis: :class:`CoordinationError` from
the call that needed it, or with ``redis_fallback="local"`` one WARNING and the in-process
limiter from then on. Key names hold the customer id (not a secret) and no login id; the
URL's password is never shown (reprs, logs, errors show ``redis://host:port/db``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError, CoordinationError
from ._ratelimit import RateLimiter, capacity_and_window

if TYPE_CHECKING:
    from ._config import Settings

__all__ = [
    "RedisFlights",
    "RedisRateLimiter",
    "flights_for",
    "rate_limiter_for",
    "shown_redis_url",
]

log = logging.getLogger("flinks_async")

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return -1
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(first[2]) - now
"""
_GIVE_BACK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
return 0
"""
#: the longest a waiting process sleeps before asking Redis again (seconds)
MAX_WAIT = 0.02


def shown_redis_url(url: str) -> str:
    """``url`` without its user, password and query (which may hold a password too):
    ``rediss://host:port/db``."""
    from yarl import URL

    parsed = URL(url)
    if not parsed.host:
        return f"{parsed.scheme or 'redis'}://?"
    return str(parsed.with_user(None).with_password(None).with_query(None))


class RedisRateLimiter:
    """The shared rate limit (see the module docstring). Same interface as
    :class:`~flinks_async._ratelimit.RateLimiter`: ``await acquire()`` returns a token that
    ``release(token)`` gives back."""

    def __init__(
        self,
        url: str,
        *,
        customer_id: str,
        capacity: int,
        window: float,
        hold: float,
        timeout: float,
        fallback: RateLimiter | None,
    ) -> None:
        aioredis = _redis_asyncio()
        self.url = shown_redis_url(url)
        self.key = f"flinks-async:{customer_id}:rate-limit"
        self.capacity = capacity
        self.window = window
        self.hold = hold
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._take = self._redis.register_script(_TAKE)
        self._give_back = self._redis.register_script(_GIVE_BACK)
        self._lock = asyncio.Lock()
        self._fallback = fallback
        self._local: RateLimiter | None = None  # once fallen back
        self._pending: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"RedisRateLimiter({self.url!r}, capacity={self.capacity}, window={self.window})"

    async def acquire(self, *, priority: bool = False) -> Any:
        """Wait for a slot; return the token to :meth:`release`."""
        if self._local is not None:
            await self._local.acquire(priority=priority)
            return None
        token = secrets.token_hex(8)
        try:
            async with self._lock:
                while True:
                    wait = await self._take(
                        keys=[self.key],
                        args=[self.capacity, int(self.hold * 1000), token],
                    )
                    if wait < 0:
                        return token
                    delay = min(max(wait, 1) / 1000, MAX_WAIT)
                    await asyncio.sleep(delay + random.uniform(0, 0.005))
        except (OSError, TimeoutError, _redis_errors()) as exc:
            return await self._unavailable(exc, priority)

    def release(self, token: Any) -> None:
        """Give a slot back: it frees ``window`` seconds from now (Redis' clock)."""
        if token is None:
            if self._local is not None:
                self._local.release()
            return
        task = asyncio.get_running_loop().create_task(self._release(token))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _release(self, token: str) -> None:
        try:
            await self._give_back(keys=[self.key], args=[int(self.window * 1000), token])
        except (OSError, TimeoutError, _redis_errors()) as exc:
            # the slot frees by itself after `hold`: nothing is lost but a little capacity
            log.warning("rate limit: could not give a slot back to %s: %s", self.url, exc)

    async def _unavailable(self, exc: BaseException, priority: bool) -> Any:
        if self._fallback is None:
            raise CoordinationError(
                f"Redis at {self.url} is unavailable for the shared rate limit: "
                f"{type(exc).__name__}"
            ) from None
        if self._local is None:
            log.warning(
                "Redis at %s is unavailable (%s): the rate limit is now this process's own "
                "(redis_fallback='local')",
                self.url,
                type(exc).__name__,
            )
            self._local = self._fallback
        await self._local.acquire(priority=priority)
        return None

    async def aclose(self) -> None:
        """Wait for the give-backs in flight, then close the connection pool."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=2)
        await self._redis.aclose()


def _redis_asyncio() -> Any:
    """redis-py's asyncio module, or a ConfigurationError naming the extra to install."""
    try:
        import redis.asyncio
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise ConfigurationError(
            "redis_url needs the redis extra: pip install 'flinks-async[redis]'"
        ) from None
    return redis.asyncio


def _redis_errors() -> type[Exception]:
    import redis.exceptions

    return redis.exceptions.RedisError


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
#: stored instead of a result over ``max_result_bytes``: waiters then pull it themselves
TOO_LARGE = b"\x00flinks-async:too-large"


#: single-flight across processes: the owner's lease (s), how long a result stays in
#: Redis (s), the largest result shared through it, how often a waiter asks (s)
LEASE = 5.0
RESULT_TTL = 15.0
MAX_RESULT_BYTES = 4 * 1024 * 1024
WAIT_POLL = 0.1


class RedisFlights:
    """Single-flight across processes.

    One run per key among every client on this Redis and customer id: the first process
    takes a **lease** (``SET NX PX``, renewed every third of its length while the work
    runs, by a check-and-extend script so a lapsed owner cannot renew another's lease);
    the others wait, asking Redis every ``poll`` seconds for the result. The owner stores
    the 200 body (``SET PX result_ttl``, at most ``max_result_bytes``; over that, a marker
    telling the waiters to pull it themselves) and gives the lease back. If the owner
    dies (kill -9), its lease lapses within ``lease`` seconds and a waiter takes it over;
    if its run fails, it gives the lease back and a waiter runs its own. Key names hold a
    hash of the call (endpoint, login id, options), never a login id. Defaults: ``LEASE``
    5 s, ``RESULT_TTL`` 15 s (a result is personal data: it never stays longer; a call
    within those seconds of a finished one gets that result), ``MAX_RESULT_BYTES`` 4 MiB,
    ``WAIT_POLL`` 0.1 s.
    """

    def __init__(
        self,
        url: str,
        *,
        customer_id: str,
        lease: float,
        result_ttl: float,
        max_result_bytes: int,
        timeout: float,
        poll: float,
        fallback: bool,
    ) -> None:
        aioredis = _redis_asyncio()
        self.url = shown_redis_url(url)
        self.prefix = f"flinks-async:{customer_id}:flight:"
        self.lease = lease
        self.result_ttl = result_ttl
        self.max_result_bytes = max_result_bytes
        self.poll = poll
        self.fallback = fallback
        self._local = False
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._pending: set[asyncio.Task[Any]] = set()

    async def run(self, key: object, work: Callable[[], Awaitable[bytes]]) -> bytes:
        """The 200 body of ``work()``, run once among every process sharing this Redis."""
        if self._local:
            return await work()
        name = hashlib.sha256(repr(key).encode()).hexdigest()[:40]
        lease_key, result_key = f"{self.prefix}{name}:lease", f"{self.prefix}{name}:result"
        token = secrets.token_hex(8)
        try:
            while True:
                cached = await self._redis.get(result_key)
                if cached == TOO_LARGE:
                    return await work()
                if cached is not None:
                    return cached if isinstance(cached, bytes) else cached.encode()
                if await self._redis.set(lease_key, token, nx=True, px=int(self.lease * 1000)):
                    # the owner stores its result before giving the lease back: a lease taken
                    # just after that must not pull again
                    cached = await self._redis.get(result_key)
                    if cached is None:
                        break
                    await self._release(keys=[lease_key], args=[token])
                    continue
                await asyncio.sleep(self.poll * random.uniform(0.8, 1.2))
        except (OSError, TimeoutError, _redis_errors()) as exc:
            return await self._unavailable(exc, work)
        return await self._own(lease_key, result_key, token, work)

    async def _own(
        self, lease_key: str, result_key: str, token: str, work: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        renewing = asyncio.get_running_loop().create_task(self._keep(lease_key, token))
        try:
            body = await work()
        except BaseException:
            renewing.cancel()
            # give the lease back (a waiter then runs its own) without waiting: we may be
            # cancelled, and the lease lapses by itself anyway
            task = asyncio.get_running_loop().create_task(self._give_up(lease_key, token))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            raise
        renewing.cancel()
        try:
            stored = body if len(body) <= self.max_result_bytes else TOO_LARGE
            await self._redis.set(result_key, stored, px=int(self.result_ttl * 1000))
            await self._release(keys=[lease_key], args=[token])
        except (OSError, TimeoutError, _redis_errors()) as exc:
            # our caller has its result; waiters will take the lease over when it lapses
            log.warning("single-flight: could not share a result through %s: %s", self.url, exc)
        return body

    async def _give_up(self, lease_key: str, token: str) -> None:
        with contextlib.suppress(Exception):
            await self._release(keys=[lease_key], args=[token])

    async def _keep(self, lease_key: str, token: str) -> None:
        """Renew the lease every third of its length while the work runs."""
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(self.lease / 3)
                await self._renew(keys=[lease_key], args=[token, int(self.lease * 1000)])

    async def _unavailable(self, exc: BaseException, work: Callable[[], Awaitable[bytes]]) -> bytes:
        if not self.fallback:
            raise CoordinationError(
                f"Redis at {self.url} is unavailable for the shared single-flight: "
                f"{type(exc).__name__}"
            ) from None
        if not self._local:
            log.warning(
                "Redis at %s is unavailable (%s): single-flight is now this process's own "
                "(redis_fallback='local')",
                self.url,
                type(exc).__name__,
            )
            self._local = True
        return await work()

    async def aclose(self) -> None:
        """Wait for the lease give-backs in flight (2 s at most), then close the pool."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=2)
        await self._redis.aclose()


# --- the two seams, as the client and transport see them --------------------------------


def rate_limiter_for(settings: Settings) -> RateLimiter | RedisRateLimiter | None:
    """The rate limiter ``settings`` ask for: none, this process's own, or the shared one
    (``redis_url``; the own one then serves as ``redis_fallback="local"``)."""
    if not settings.rate_limit:
        return None
    capacity, window = capacity_and_window(settings.rate_limit, settings.rate_limit_window)
    local = RateLimiter(capacity, window)
    if not settings.redis_url:
        return local
    return RedisRateLimiter(
        settings.redis_url,
        customer_id=settings.customer_id,
        capacity=capacity,
        window=window,
        hold=settings.connect_timeout + window,
        timeout=settings.coordination_timeout,
        fallback=local if settings.redis_fallback == "local" else None,
    )


def flights_for(settings: Settings) -> RedisFlights | None:
    """The shared single-flight table ``settings`` ask for (``redis_url``), else ``None``:
    the client's in-process one alone."""
    if not settings.redis_url:
        return None
    return RedisFlights(
        settings.redis_url,
        customer_id=settings.customer_id,
        lease=LEASE,
        result_ttl=RESULT_TTL,
        max_result_bytes=MAX_RESULT_BYTES,
        timeout=settings.coordination_timeout,
        poll=WAIT_POLL,
        fallback=settings.redis_fallback == "local",
    )
