"""Webhooks: Flinks POSTs a finished answer, and the call awaiting it wakes up.

What flows where::

    Flinks --POST, signed--> WebhookReceiver --store(), once--> hub --wake--> fetch() waiting
                              (aiohttp.web handler         |               on its RequestId
                               or ASGI app)                 +--> deliveries(), for the app

* ``WebhookReceiver`` (:mod:`flinks_async._receiver`: what a stranger's POST may hold
  before it is verified, bounded apart from the client's own bodies) checks the signature
  on the raw bytes (:func:`sign`: ``Base64(HMAC-SHA256(secret, body))``, compared in
  constant time against every secret given, for rotation), reads ``ResponseType``,
  ``RequestId``, ``LoginId`` and ``Tag`` (:class:`WebhookDelivery`), and stores the
  delivery in a hub; it answers ``200`` only once the hub has stored it.
* A hub (:class:`WebhookHub`) is idempotent: a delivery is identified by the SHA-256 of its
  body, and Flinks' repeats of one delivery are stored once (for ``seen_for`` seconds, 6 h
  by default: Flinks retries up to 10 times, 30 minutes apart). It keeps the body of a data
  answer for its ``RequestId`` for ``retention`` seconds (15 minutes by default), so a
  webhook that came before the call began to wait is still seen, and hands it to the one
  call that takes it (the body is then deleted). With ``stream=True`` it also queues every
  delivery for :meth:`WebhookHub.deliveries`.
* :class:`MemoryWebhooks` is the hub of one process (its stream is in memory: lost with
  the process). ``flinks_async._redis.RedisWebhooks`` is the hub on Redis (a data call in
  any process wakes, the stream is a Redis Stream read by consumer groups: at-least-once,
  acknowledged).

The client (``FlinksClient(webhooks=True)``) waits on its hub between polls instead of
sleeping: see :func:`flinks_async._polling.run_plan`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec

from ._coordination import RETENTION, SEEN_FOR, StoredWebhook, WebhookHub
from ._decoding import ModelDecoder
from ._endpoints import ENDPOINTS
from ._errors import DecodeError
from ._schema import SchemaCheck

__all__ = [
    "DATA_TYPES",
    "SIGNATURE_HEADERS",
    "MemoryWebhooks",
    "WebhookDelivery",
    "WebhookHub",
    "sign",
    "signature_ok",
]

log = logging.getLogger("flinks_async.webhooks")

#: the request headers a signature is read from, first found wins: Flinks' API reference
#: names ``flinks-authenticity-key``, a newer guide's example ``X-Flinks-Signature``
SIGNATURE_HEADERS: tuple[str, ...] = ("flinks-authenticity-key", "x-flinks-signature")
#: the ``ResponseType`` of each data answer, and the model it is decoded into
DATA_TYPES: dict[str, type[Any]] = {
    row.response_type: row.model for row in ENDPOINTS.values() if row.response_type
}
#: the ``ResponseType``\ s known besides the data answers (kept as a dict when decoded)
OTHER_TYPES = frozenset({"KYC"})


def sign(body: bytes, secret: str) -> str:
    """The signature Flinks sends for ``body``: ``Base64(HMAC-SHA256(secret, body))``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_ok(body: bytes, given: str | None, secrets: Iterable[str]) -> bool:
    """Whether ``given`` is the signature of ``body`` under any of ``secrets``; every
    secret is compared, in constant time (``hmac.compare_digest``)."""
    if not given:
        return False
    given_bytes = given.strip().encode()
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(sign(body, secret).encode(), given_bytes)
    return ok


class _Head(msgspec.Struct):
    """The keys a receiver reads of a webhook body (the rest is left to the decoders)."""

    ResponseType: Any = None
    RequestId: Any = None
    LoginId: Any = None
    Tag: Any = None


_HEAD = msgspec.json.Decoder(_Head)
#: the drift check of deliveries decoded by :meth:`WebhookDelivery.value`
_SCHEMA = SchemaCheck(strict=False, keep_extra=False, hooks=())


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One webhook as stored: its body and the keys that route it.

    ``id`` is the SHA-256 (hex) of the body: Flinks' repeats of a delivery share it.
    ``login_id``, ``tag`` and ``body`` hold personal data and stay out of the repr.
    """

    id: str
    response_type: str | None
    request_id: str | None
    login_id: str | None = dataclasses.field(repr=False)
    tag: str | None = dataclasses.field(repr=False)
    body: bytes = dataclasses.field(repr=False)
    #: where a Redis stream keeps it (``None`` in memory): what :meth:`WebhookHub.ack` needs
    entry: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_body(cls, body: bytes, *, entry: str | None = None) -> WebhookDelivery:
        """A delivery read from a webhook body; :class:`DecodeError` when the body is not
        a JSON object."""
        try:
            head = _HEAD.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            msg = str(exc) if not isinstance(exc, RecursionError) else "nested too deep"
            raise DecodeError(f"the webhook body is not a JSON object: {msg}") from None
        return cls(
            id=hashlib.sha256(body).hexdigest(),
            response_type=_text(head.ResponseType),
            request_id=_text(head.RequestId),
            login_id=_text(head.LoginId),
            tag=_text(head.Tag),
            body=body,
            entry=entry,
        )

    @property
    def wakes(self) -> str | None:
        """The RequestId whose waiting call this delivery ends: a data answer's."""
        return self.request_id if self.response_type in DATA_TYPES else None

    @property
    def known(self) -> bool:
        """Whether its ``ResponseType`` is one this client knows."""
        return self.response_type in DATA_TYPES or self.response_type in OTHER_TYPES

    def value(self) -> Any:
        """The body decoded: the endpoint's model for a data answer, as a call decodes it
        (the same money rules and errors; schema drift logged and repaired the same way,
        see :mod:`flinks_async._schema`), a dict for ``KYC`` and any ``ResponseType`` this
        client does not know."""
        kind = self.response_type or ""
        model = DATA_TYPES.get(kind)
        if model is None:
            return msgspec.json.decode(self.body)
        checked = _SCHEMA.wrap(ModelDecoder.of(model, raw=False), model, kind, self.login_id)
        return checked(self.body)


class MemoryWebhooks:
    """The hub of one process (see the module docstring): the receiver and the calls must
    share the event loop's process. Its stream is a queue in memory: deliveries not yet
    read are lost with the process (use the Redis hub for at-least-once)."""

    def __init__(
        self, *, retention: float = RETENTION, seen_for: float = SEEN_FOR, stream: bool = False
    ) -> None:
        self.retention = retention
        self.seen_for = seen_for
        self.stream = stream
        # insertion order is expiry order (one lifetime each): expired entries sit in front
        self._bodies: dict[str, tuple[float, bytes]] = {}
        self._seen: dict[str, float] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = collections.defaultdict(set)
        self._queue: asyncio.Queue[WebhookDelivery] | None = None

    def __repr__(self) -> str:
        return f"<MemoryWebhooks retention={self.retention}s stream={self.stream}>"

    def _expire(self, now: float) -> None:
        bodies, seen = self._bodies, self._seen
        while bodies and next(iter(bodies.values()))[0] <= now:
            del bodies[next(iter(bodies))]
        while seen and next(iter(seen.values())) <= now:
            del seen[next(iter(seen))]

    async def store(self, delivery: StoredWebhook) -> bool:
        now = time.monotonic()
        self._expire(now)
        if delivery.id in self._seen:
            return False
        self._seen[delivery.id] = now + self.seen_for
        rid = delivery.wakes
        if rid is not None:
            self._bodies.pop(rid, None)
            self._bodies[rid] = (now + self.retention, delivery.body)
            for waiter in self._waiters.get(rid, ()):
                if not waiter.done():
                    waiter.set_result(None)
        if self.stream:
            self._stream().put_nowait(
                delivery
                if isinstance(delivery, WebhookDelivery)
                else WebhookDelivery.from_body(delivery.body)
            )
        return True

    def _take(self, request_id: str) -> bytes | None:
        self._expire(time.monotonic())
        found = self._bodies.pop(request_id, None)
        return None if found is None else found[1]

    async def wait(self, request_id: str, timeout: float) -> bytes | None:
        body = self._take(request_id)
        if body is not None:
            return body
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters[request_id]
        waiters.add(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[request_id]
        return self._take(request_id)

    def _stream(self) -> asyncio.Queue[WebhookDelivery]:
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    async def deliveries(self) -> AsyncIterator[WebhookDelivery]:
        if not self.stream:
            raise RuntimeError("this hub keeps no stream: make it with stream=True")
        queue = self._stream()
        while True:
            yield await queue.get()

    async def ack(self, delivery: WebhookDelivery) -> None:
        """Nothing to do in memory (a delivery is handed out once)."""

    async def aclose(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
