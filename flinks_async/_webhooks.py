"""Webhooks: Flinks POSTs a finished answer, and the call awaiting it wakes up.

What flows where::

    Flinks --POST, signed--> WebhookReceiver --store(), once--> hub --wake--> fetch() waiting
                              (aiohttp.web handler         |               on its RequestId
                               or ASGI app)                 +--> deliveries(), for the app

* :class:`WebhookReceiver` checks the signature on the raw bytes (:func:`signature_ok`:
  ``Base64(HMAC-SHA256(secret, body))``, compared in constant time against every secret
  given, for rotation), reads ``ResponseType``, ``RequestId``, ``LoginId`` and ``Tag``, and
  stores the delivery in a hub; it answers ``200`` only once the hub has stored it, ``401``
  (nothing stored) for a missing or bad signature, ``413`` past ``max_body_bytes``, ``400``
  for a body that is not a JSON object, ``503`` when the hub cannot store it (Flinks then
  delivers again).
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
sleeping: see :func:`flinks_async._polling.fetch`.
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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import msgspec
from aiohttp import web

from ._budget import BodyBudget
from ._coordination import RETENTION, SEEN_FOR, StoredWebhook, WebhookHub
from ._decoding import make_decoder
from ._errors import DecodeError
from ._models import AccountsDetail, AccountsSummary, Investments, Statements
from ._schema import SchemaCheck

__all__ = [
    "DATA_TYPES",
    "SIGNATURE_HEADERS",
    "MemoryWebhooks",
    "WebhookDelivery",
    "WebhookHub",
    "WebhookReceiver",
    "sign",
    "signature_ok",
]

log = logging.getLogger("flinks_async.webhooks")

#: the request headers a signature is read from, first found wins: Flinks' API reference
#: names ``flinks-authenticity-key``, a newer guide's example ``X-Flinks-Signature``
SIGNATURE_HEADERS: tuple[str, ...] = ("flinks-authenticity-key", "x-flinks-signature")
#: the ``ResponseType`` of each data answer, and the model it is decoded into
DATA_TYPES: dict[str, type[Any]] = {
    "Investments": Investments,
    "GetAccountsDetail": AccountsDetail,
    "GetAccountsSummary": AccountsSummary,
    "GetStatements": Statements,
}
#: the ``ResponseType``\ s known besides the data answers (kept as a dict when decoded)
OTHER_TYPES = frozenset({"KYC"})
#: default ``max_body_bytes`` of a receiver: the client's ``max_response_bytes`` default
MAX_BODY_BYTES = 64 * 1024 * 1024


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
        checked = _SCHEMA.wrap(make_decoder(model, raw=False), model, kind, self.login_id)
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


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class WebhookReceiver:
    """The endpoint Flinks POSTs webhooks to; mount it in one line:

    * aiohttp.web: ``app.router.add_post("/flinks/webhook", receiver.aiohttp_handler)``;
    * FastAPI / Starlette (any ASGI framework): ``app.mount("/flinks/webhook", receiver)``
      (the receiver is an ASGI app; it answers POST on any path under the mount).

    Args:
        hub: where deliveries are stored (``client.webhooks`` shares the client's).
        secrets: the HMAC secret(s) of the Flinks instance; during a rotation give the old
            and the new one. Never shown in reprs or logs.
        header_names: where the signature is read, first header present wins (default
            :data:`SIGNATURE_HEADERS`: both names Flinks documents).
        max_body_bytes: larger bodies get ``413`` (default 64 MiB, the client's
            ``max_response_bytes``).
        budget: bytes of bodies held at once, shared with the calls of a client
            (``client.webhook_receiver()`` gives the client's ``max_body_bytes_in_flight``):
            a body takes its ``Content-Length`` before it is read (or its size once read,
            when the length is not given) and gives it back once stored. ``None``: no
            budget beyond ``max_body_bytes`` per request.
    """

    def __init__(
        self,
        hub: WebhookHub,
        secrets: str | Iterable[str],
        *,
        header_names: Iterable[str] = SIGNATURE_HEADERS,
        max_body_bytes: int = MAX_BODY_BYTES,
        budget: BodyBudget | None = None,
    ) -> None:
        self._secrets = (secrets,) if isinstance(secrets, str) else tuple(secrets)
        if not self._secrets or not all(self._secrets):
            raise ValueError("a WebhookReceiver needs at least one non-empty secret")
        self.hub = hub
        self.header_names = tuple(h.lower() for h in header_names)
        self.max_body_bytes = max_body_bytes
        self.budget = budget
        #: deliveries stored, repeats dropped, refused (bad signature, bad body, too big)
        self.counts: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        return (
            f"<WebhookReceiver secrets=*** ({len(self._secrets)}) "
            f"headers={list(self.header_names)} hub={self.hub!r}>"
        )

    async def receive(self, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """Handle one POST: ``(status, text)`` to answer (see the module docstring).
        ``headers``' names are matched case-insensitively."""
        if len(body) > self.max_body_bytes:
            self.counts["too_big"] += 1
            log.warning("webhook refused: %d bytes is over max_body_bytes", len(body))
            return 413, "too large"
        lowered = {k.lower(): v for k, v in headers.items()}
        given = next((lowered[h] for h in self.header_names if h in lowered), None)
        if not signature_ok(body, given, self._secrets):
            self.counts["bad_signature"] += 1
            log.warning("webhook refused (401): %s signature", "a bad" if given else "no")
            return 401, "bad signature"
        try:
            delivery = WebhookDelivery.from_body(body)
        except DecodeError as exc:
            self.counts["bad_body"] += 1
            log.warning("webhook refused (400): %s", exc)
            return 400, "not a JSON object"
        if not delivery.known:
            log.warning(
                "webhook of unknown ResponseType %r kept raw (%d bytes): this client "
                "does not decode it; deliveries() hands it over as it came",
                delivery.response_type,
                len(body),
            )
        try:
            new = await self.hub.store(delivery)
        except Exception as exc:  # the hub's store failed: Flinks will deliver again
            self.counts["store_failed"] += 1
            log.warning("webhook not stored (503, Flinks will retry): %s", type(exc).__name__)
            return 503, "not stored"
        self.counts["stored" if new else "repeated"] += 1
        return 200, "ok"

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """The receiver as an aiohttp.web handler (route it for POST)."""
        if request.method != "POST":
            return web.Response(status=405, text="POST only")
        answer = await self._read_and_receive(
            request.headers, request.content_length, request.content.iter_any()
        )
        assert answer is not None  # aiohttp cancels the handler of a client gone
        status, text = answer
        return web.Response(status=status, text=text)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The receiver as an ASGI 3 app (FastAPI/Starlette ``mount``, uvicorn)."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        if scope.get("method") != "POST":
            await _asgi_answer(send, 405, "POST only")
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        length = {k.lower(): v for k, v in headers.items()}.get("content-length", "")
        answer = await self._read_and_receive(
            headers, int(length) if length.isdigit() else None, _asgi_chunks(receive)
        )
        if answer is not None:
            await _asgi_answer(send, *answer)

    async def _read_and_receive(
        self, headers: Mapping[str, str], length: int | None, chunks: AsyncIterator[bytes]
    ) -> tuple[int, str] | None:
        """Read a POST's body within ``max_body_bytes`` and the budget (its ``length`` taken
        before the first byte, the rest once read, all given back once handled), then
        :meth:`receive` it: ``(status, text)``, or ``None`` when the sender went away."""
        if (length or 0) > self.max_body_bytes:
            self.counts["too_big"] += 1
            return 413, "too large"
        budget = self.budget
        held = 0
        if budget is not None and length:
            await budget.take(length)
            held = length
        try:
            parts: list[bytes] = []
            size = 0
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        self.counts["too_big"] += 1
                        return 413, "too large"
                    parts.append(chunk)
            except _SenderGone:
                return None
            if budget is not None and size > held:
                await budget.take(size - held)
                held = size
            return await self.receive(headers, b"".join(parts))
        finally:
            if budget is not None and held:
                budget.give(held)


class _SenderGone(Exception):
    """An ASGI ``http.disconnect`` before the whole body came."""


async def _asgi_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """An ASGI request's body, chunk by chunk (:class:`_SenderGone` on a disconnect)."""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _SenderGone
        yield message.get("body", b"")
        more = message.get("more_body", False)


async def _asgi_answer(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
