"""The coordination seams of a client, and what fills them.

* **The rate limiter** (:class:`Limiter`): ``await acquire()`` before a request is sent,
  ``release(token)`` once its answer began (or it failed). The transport calls it and
  never chooses it. Filled by this process's own
  :class:`~flinks_async._ratelimit.RateLimiter`, or with ``redis_url`` by the shared
  :class:`~flinks_async._redis.RedisRateLimiter` (``redis_rate_limit=False`` keeps the
  limit this process's own).
* **Shared single-flight** (:class:`SharedFlights`): a login's run once among every
  process on a Redis. The client's in-process single-flight
  (:mod:`flinks_async._singleflight`) always comes first; this one is filled only with
  ``redis_url`` and ``redis_single_flight=True`` (the default), by
  :class:`~flinks_async._redis.RedisFlights`.
* **The webhook hub** (:class:`WebhookHub`, with ``webhooks=True``): where a receiver
  stores Flinks' webhooks and the calls waiting on a RequestId find them. Filled by
  :class:`~flinks_async._webhooks.MemoryWebhooks`, or with ``redis_url`` by
  :class:`~flinks_async._redis.RedisWebhooks` (see :mod:`flinks_async._webhooks`).

:func:`build` makes this process's part from a client's settings, and the client adds the
shared parts with :func:`flinks_async._redis.attach` when :func:`shared_parts` asks for
them; the client owns the result (:class:`Coordination`) and closes it. This module never
imports :mod:`flinks_async._redis` (it imports this one): only the client does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from ._ratelimit import RateLimiter, capacity_and_window

if TYPE_CHECKING:
    from ._config import Settings

__all__ = [
    "RETENTION",
    "SEEN_FOR",
    "Coordination",
    "FlightDeadline",
    "Limiter",
    "Progress",
    "SharedFlights",
    "StoredWebhook",
    "WebhookHub",
    "build",
    "shared_parts",
]

RETENTION = 900.0  #: default seconds a data answer's webhook body waits for its call
SEEN_FOR = 6 * 3600.0  #: default seconds a delivery's id is remembered (repeats dropped)


class FlightDeadline(TimeoutError):
    """A caller of :meth:`SharedFlights.run` reached its own deadline while another
    process's run was still going (the client raises
    :class:`~flinks_async.PollTimeoutError` for it)."""

    def __init__(self, request_id: str | None = None) -> None:
        super().__init__("the caller's deadline passed while another process polled")
        self.request_id = request_id  #: the RequestId that run polls, when it was shared


class Progress(Protocol):
    """How far a run got, as :class:`SharedFlights` hands it over between processes (the
    client's :class:`~flinks_async._polling.Plan` is one)."""

    request_id: str | None  #: the session being polled
    posted: bool  #: its first data request was answered: poll it from now on


class Limiter(Protocol):
    """What the transport needs of a rate limiter."""

    async def acquire(self, *, priority: bool = False) -> Any:
        """Wait for a slot; return the token to give back."""

    def release(self, token: Any) -> None:
        """The request's answer began, or it failed or was cancelled."""


class SharedFlights(Protocol):
    """What the client needs of a single-flight table shared between processes."""

    async def run(
        self,
        key: object,
        work: Callable[[], Awaitable[bytes]],
        *,
        login_id: str,
        deadline: float | None = None,
        progress: Progress | None = None,
    ) -> bytes:
        """The 200 body of ``work()``, run once among the processes sharing the table;
        ``deadline``: when this caller gives up waiting (:class:`FlightDeadline`);
        ``progress``: what ``work`` resumes from when it takes another's run over."""

    async def aclose(self) -> None:
        """Finish what is in flight."""


class StoredWebhook(Protocol):
    """What a hub stores of a webhook (:class:`~flinks_async.WebhookDelivery` is one)."""

    @property
    def id(self) -> str:
        """The SHA-256 (hex) of the body: Flinks' repeats of a delivery share it."""

    @property
    def body(self) -> bytes:
        """The body as received."""

    @property
    def wakes(self) -> str | None:
        """The RequestId whose waiting call this body ends (a data answer), else None."""


class WebhookHub(Protocol):
    """Where a receiver stores deliveries and awaiting calls find them."""

    async def store(self, delivery: StoredWebhook) -> bool:
        """Store ``delivery`` and wake the call awaiting its ``RequestId``; ``False`` (and
        nothing stored) when it was stored already."""

    async def wait(self, request_id: str, timeout: float) -> bytes | None:
        """The body of the data answer for ``request_id``: at once if it came already,
        else as soon as it comes within ``timeout`` seconds, else ``None``. Taken: a
        second ``wait`` for it gets ``None``."""

    def deliveries(self) -> AsyncIterator[Any]:
        """Every delivery stored (the hub must be made with ``stream=True``), as
        :class:`~flinks_async.WebhookDelivery`; :meth:`ack` each once handled."""

    async def ack(self, delivery: Any) -> None:
        """Mark ``delivery`` handled (it is not handed out again)."""

    async def aclose(self) -> None:
        """Stop waking calls; release connections."""


@dataclasses.dataclass(slots=True)
class Coordination:
    """A client's rate limiter and shared single-flight table (either may be None)."""

    limiter: Limiter | None = None
    flights: SharedFlights | None = None
    redis: Any = None  #: the Redis connection pool behind them, when there is one
    #: where webhooks wake data calls, or None
    webhooks: WebhookHub | None = None

    async def aclose(self) -> None:
        """Close the shared limiter and flights, then the Redis pool. Idempotent."""
        closers = [self.webhooks, self.flights, self.limiter]
        self.webhooks = self.flights = self.limiter = None
        for part in closers:
            close = getattr(part, "aclose", None)
            if close is not None:
                await close()
        redis, self.redis = self.redis, None
        if redis is not None:
            await redis.aclose()


def build(settings: Settings) -> Coordination:
    """This process's own part of what ``settings`` ask for: the local rate limiter. The
    client adds the shared parts (:func:`shared_parts`) with
    :func:`flinks_async._redis.attach`."""
    coordination = Coordination()
    if settings.rate_limit:
        capacity, window = capacity_and_window(settings.rate_limit, settings.rate_limit_window)
        coordination.limiter = RateLimiter(capacity, window)
    return coordination


def shared_parts(settings: Settings) -> tuple[bool, bool]:
    """Whether ``settings`` share (the rate limit, single-flight) through Redis."""
    url = settings.redis_url
    return (
        bool(url and settings.rate_limit and settings.redis_rate_limit),
        bool(url and settings.redis_single_flight),
    )
