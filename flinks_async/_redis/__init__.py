"""The Redis implementations of the coordination seams (``pip install
'flinks-async[redis]'``): :class:`RedisRateLimiter` (one ``rate_limit`` for every process
on a Redis and customer id) and :class:`RedisFlights` (one Authorize and one poll per
login across them). One module per primitive: the Lua scripts, the connection pool, the
limiter (with its local-share fallback and the peers' heartbeats), the flights.

Only :mod:`flinks_async._coordination` imports this package, and only once a client is
given a ``redis_url``: ``import flinks_async`` never imports redis-py.
"""

from __future__ import annotations

from ._connection import connect, redis_errors
from ._flights import RedisFlights
from ._limiter import RedisRateLimiter, share_of

__all__ = ["RedisFlights", "RedisRateLimiter", "connect", "redis_errors", "share_of"]
