"""The Redis implementations of the coordination seams (``pip install
'flinks-async[redis]'``): :class:`RedisRateLimiter` (one ``rate_limit`` for every process
on a Redis and customer id) and :class:`RedisFlights` (one Authorize and one poll per
login across them). One module per primitive: the Lua scripts, the connection pool, the
limiter (with its local-share fallback and the peers' heartbeats), the flights.

Only the client imports this package (:func:`attach`), and only once it is given a
``redis_url``: ``import flinks_async`` never imports redis-py. It imports the core's
protocols (:mod:`flinks_async._coordination`), never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._ratelimit import RateLimiter
from .._redact import shown_redis_url
from ._connection import connect, redis_errors
from ._flights import RedisFlights
from ._limiter import RedisRateLimiter, share_of
from ._webhooks import RedisWebhooks

if TYPE_CHECKING:
    from .._config import Settings
    from .._coordination import Coordination

__all__ = [
    "RedisFlights",
    "RedisRateLimiter",
    "RedisWebhooks",
    "attach",
    "connect",
    "redis_errors",
    "share_of",
]


def attach(
    coordination: Coordination,
    settings: Settings,
    *,
    share_limit: bool,
    share_flights: bool,
    delivery_from: Callable[..., Any] | None = None,
) -> None:
    """Fill ``coordination`` with the shared parts ``settings`` ask for: one Redis pool
    (closed with it), the shared limiter in place of the local one (same capacity and
    window), the shared flights, the webhook hub (with ``webhooks=True``)."""
    url = settings.redis_url
    assert url is not None
    fallback = settings.redis_fallback == "local"
    coordination.redis = redis = connect(url, timeout=settings.coordination_timeout)
    local = coordination.limiter
    if share_limit:
        assert isinstance(local, RateLimiter)
        coordination.limiter = RedisRateLimiter(
            redis,
            shown_url=shown_redis_url(url),
            customer_id=settings.customer_id,
            capacity=local.capacity,
            window=local.window,
            fallback=fallback,
        )
    if settings.webhooks:
        assert delivery_from is not None
        coordination.webhooks = RedisWebhooks(
            redis,
            delivery_from=delivery_from,
            shown_url=shown_redis_url(url),
            customer_id=settings.customer_id,
            retention=settings.webhook_retention,
            stream=settings.webhook_stream,
        )
    if share_flights:
        coordination.flights = RedisFlights(
            redis,
            shown_url=shown_redis_url(url),
            customer_id=settings.customer_id,
            fallback=fallback,
        )
