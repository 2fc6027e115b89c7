"""The webhook hub on Redis: a webhook received by any process wakes the call awaiting it
in any other, and an application reads every delivery from a Redis Stream.

Keys, under ``flinks-async:{customer_id}:webhook:`` (RequestIds appear hashed, never as
they are):

* ``seen:{sha256 of the body}``: the delivery was stored (``seen_for``, 6 h: Flinks'
  repeats of one delivery are dropped for that long);
* ``body:{hash of the RequestId}``: a data answer's body, kept ``retention`` seconds (15
  minutes) for the call awaiting it, deleted by the call that takes it (``GETDEL``);
* ``stream`` (only with ``stream=True``): every delivery, read with a consumer group
  (``XREADGROUP``) and deleted once acknowledged (``XACK`` + ``XDEL``): at-least-once,
  and a delivery a dead consumer held is claimed by another after ``claim_after`` seconds
  (``XAUTOCLAIM``);
* the channel ``wake``: the RequestId's hash is published when its body is stored.

One script (``STORE_WEBHOOK``) sets the marker, the body, the stream entry and publishes,
atomically: a receiver killed at any point has stored all of it or nothing, and Flinks'
next attempt stores what is missing.

A waiting call subscribes (one subscription per process, shared), then looks for a body
already there, then waits for the wake-up; a wait that ends without one looks once more.
Redis unreachable: the wait sleeps its time out and returns nothing, so the call polls on
its safety schedule (logged once per outage); a receiver answers 503 and Flinks delivers
again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from .._coordination import RETENTION, SEEN_FOR, StoredWebhook
from . import _scripts
from ._connection import connect, guarded, redis_errors

__all__ = ["CLAIM_AFTER", "RedisWebhooks"]

log = logging.getLogger("flinks_async.webhooks")

#: seconds a delivery handed to a consumer may stay unacknowledged before another
#: consumer of the group takes it over
CLAIM_AFTER = 60.0


def _hashed(request_id: str) -> str:
    return hashlib.sha256(request_id.encode()).hexdigest()[:32]


class RedisWebhooks:
    """The webhook hub on Redis (see the module docstring).

    A client with ``webhooks=True`` and ``redis_url`` makes its own (read it as
    ``client.webhooks``). ``delivery_from(body, entry)`` makes what :meth:`deliveries`
    yields (the client gives :meth:`flinks_async.WebhookDelivery.from_body`).
    """

    def __init__(
        self,
        redis: Any,
        *,
        delivery_from: Callable[..., Any],
        shown_url: str,
        customer_id: str,
        retention: float = RETENTION,
        seen_for: float = SEEN_FOR,
        stream: bool = False,
        group: str = "flinks-async",
        claim_after: float = CLAIM_AFTER,
        owns_redis: bool = False,
    ) -> None:
        self.url = shown_url
        self.prefix = f"flinks-async:{customer_id}:webhook:"
        self.channel = f"{self.prefix}wake"
        self.stream_key = f"{self.prefix}stream"
        self.retention = retention
        self.seen_for = seen_for
        self.stream = stream
        self.group = group
        self.claim_after = claim_after
        self._redis = redis
        self._delivery_from = delivery_from
        self._owns_redis = owns_redis
        self._store = redis.register_script(_scripts.STORE_WEBHOOK)
        self._waiters: dict[str, set[asyncio.Future[None]]] = collections.defaultdict(set)
        self._listener: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._away = False  # an outage was logged

    @classmethod
    def from_url(
        cls, url: str, *, customer_id: str, timeout: float = 2.0, **options: Any
    ) -> RedisWebhooks:
        """A hub on its own connection pool to ``url`` (closed by :meth:`aclose`);
        ``options`` as the constructor's (``stream=True`` for :meth:`deliveries`)."""
        from .._redact import shown_redis_url

        redis = connect(url, timeout=timeout)
        shown = shown_redis_url(url)
        return cls(redis, shown_url=shown, customer_id=customer_id, owns_redis=True, **options)

    def __repr__(self) -> str:
        return f"<RedisWebhooks {self.url} retention={self.retention}s stream={self.stream}>"

    # --- storing ---------------------------------------------------------------------

    async def store(self, delivery: StoredWebhook) -> bool:
        rid = delivery.wakes
        hashed = _hashed(rid) if rid else ""
        keys = [f"{self.prefix}seen:{delivery.id}", f"{self.prefix}body:{hashed}", self.stream_key]
        args = [
            int(self.seen_for * 1000),
            delivery.body,
            hashed,
            int(self.retention * 1000),
            "1" if self.stream else "0",
            self.channel,
        ]
        stored = await guarded(self._store(keys=keys, args=args))
        return bool(stored)

    # --- waking calls ----------------------------------------------------------------

    async def wait(self, request_id: str, timeout: float) -> bytes | None:
        hashed = _hashed(request_id)
        end = time.monotonic() + timeout
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters[hashed]
        waiters.add(waiter)
        try:
            try:
                await self._subscribed(timeout)
                body = await self._take(hashed)
                if body is not None:
                    return body
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(end - time.monotonic(), 0.0)):
                        await waiter
                return await self._take(hashed)
            except (redis_errors(), OSError, TimeoutError) as exc:
                self._trouble(exc)
                left = end - time.monotonic()
                if left > 0:
                    await asyncio.sleep(left)  # the call's safety poll comes next
                return None
        finally:
            waiters.discard(waiter)
            if not waiters:
                self._waiters.pop(hashed, None)

    async def _take(self, hashed: str) -> bytes | None:
        body: bytes | None = await guarded(self._redis.getdel(f"{self.prefix}body:{hashed}"))
        if self._away:
            self._away = False
            log.warning("webhooks: Redis at %s answers again", self.url)
        return body

    def _trouble(self, exc: BaseException) -> None:
        if not self._away:
            self._away = True
            log.warning(
                "webhooks: Redis at %s unavailable (%s): calls poll on their safety "
                "schedule until it answers",
                self.url,
                type(exc).__name__,
            )

    async def _subscribed(self, timeout: float) -> None:
        """Return once this process is subscribed to the wake-up channel."""
        if self._ready is None:
            self._ready = asyncio.Event()
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        if not self._ready.is_set():
            async with asyncio.timeout(timeout):
                await self._ready.wait()

    async def _listen(self) -> None:
        """Wake the local waiters of each RequestId published; resubscribe after an
        outage (waking every waiter, so that each looks for its body again)."""
        assert self._ready is not None
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._ready.set()
                    elif message["type"] == "message":
                        data = message["data"]
                        self._wake(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._ready.clear()
                self._trouble(exc)
                for hashed in list(self._waiters):
                    self._wake(hashed)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(pubsub.aclose())

    def _wake(self, hashed: str) -> None:
        for waiter in self._waiters.get(hashed, ()):
            if not waiter.done():
                waiter.set_result(None)

    # --- the stream ------------------------------------------------------------------

    async def deliveries(
        self, *, consumer: str | None = None, count: int = 16, block: float = 1.0
    ) -> AsyncIterator[Any]:
        """Every delivery stored by a hub made with ``stream=True``, read in the consumer
        group ``group`` as ``consumer`` (default: host and pid); :meth:`ack` each once
        handled. Deliveries another consumer held unacknowledged for ``claim_after``
        seconds are taken over first."""
        name = consumer or f"{socket.gethostname()}:{os.getpid()}"
        import redis.exceptions

        try:
            await self._redis.xgroup_create(self.stream_key, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        while True:
            claimed = await self._redis.xautoclaim(
                self.stream_key,
                self.group,
                name,
                min_idle_time=int(self.claim_after * 1000),
                start_id="0-0",
                count=count,
            )
            for entry_id, fields in claimed[1]:
                if fields:  # deleted meanwhile: nothing to hand out
                    yield self._delivery(entry_id, fields)
            read = await self._redis.xreadgroup(
                self.group, name, {self.stream_key: ">"}, count=count, block=int(block * 1000)
            )
            for _, entries in read or ():
                for entry_id, fields in entries:
                    yield self._delivery(entry_id, fields)

    def _delivery(self, entry_id: Any, fields: dict[Any, Any]) -> Any:
        entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        return self._delivery_from(fields[b"body"], entry=entry)

    async def ack(self, delivery: Any) -> None:
        """Acknowledge ``delivery`` and delete its entry (its body is personal data)."""
        if delivery.entry is None:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream_key, self.group, delivery.entry)
            pipe.xdel(self.stream_key, delivery.entry)
            await guarded(pipe.execute())

    async def aclose(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        if self._owns_redis:
            await self._redis.aclose()
