"""One Redis connection pool per client, shared by its rate limiter and single-flight."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from .._errors import ConfigurationError

__all__ = ["POOL_SIZE", "POOL_WAIT", "connect", "guarded", "redis_errors"]

T = TypeVar("T")

#: connections a client opens to Redis at most; callers beyond wait for a free one
POOL_SIZE = 32
#: how long a caller waits for a free pooled connection at least (seconds); it is
#: ``max(POOL_WAIT, coordination_timeout)``, then :class:`CoordinationError`
POOL_WAIT = 10.0


def connect(url: str, *, timeout: float) -> Any:
    """A ``redis.asyncio.Redis`` on a *blocking* pool of :data:`POOL_SIZE` connections:
    hundreds of callers on one client queue for a connection (redis-py's
    ``BlockingConnectionPool``) instead of failing with "too many connections". Every
    operation times out after ``timeout`` seconds (``coordination_timeout``)."""
    try:
        import redis.asyncio
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise ConfigurationError(
            "redis_url needs the redis extra: pip install 'flinks-async[redis]'"
        ) from None
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=max(POOL_WAIT, timeout),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return redis.asyncio.Redis.from_pool(pool)


def redis_errors() -> type[Exception]:
    """redis-py's base error (imported only once a Redis is in use)."""
    import redis.exceptions

    return redis.exceptions.RedisError


async def guarded(call: Awaitable[T]) -> T:
    """Await a redis-py call without losing a cancellation.

    On Python 3.11 redis-py sends each command through ``asyncio.wait_for``, which swallows
    a cancellation that arrives just as the send completes (CPython gh-86296, fixed in
    3.12): the task then runs on, cancelled in name only, and a fan-out's exit waits for it
    forever (seen here after a Redis restart, about one run in five). When a cancellation
    was requested during the call and did not surface, it is raised here."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    try:
        result = await call
    except Exception:
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError from None
        raise
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
    return result
