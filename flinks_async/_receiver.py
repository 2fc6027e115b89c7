"""The webhook receiver: the one part of the client that strangers can reach.

A webhook URL is public (Flinks must reach it, so anyone can), so everything a POST can
make the receiver hold is bounded *before* its signature is known to be good, and none of
it is shared with the client's own calls (their ``max_body_bytes_in_flight`` is never
touched by a body being received). A POST goes through four gates:

1. **Refused before a byte of its body is read**, and its connection closed:

   * ``405`` for anything but POST;
   * ``401`` when no signature header is present, or its value is not Base64 of 32 bytes
     (the size of an HMAC-SHA256): junk costs one parse of its headers;
   * ``411`` for a body without ``Content-Length`` (chunked): parsing a stream of tiny
     chunks costs the event loop a core whatever the receiver does with them, and a
     webhook sender knows its body's length (our choice: Flinks does not document its
     sender's framing; ``require_length=False`` accepts chunked bodies);
   * ``415`` for a ``Content-Encoding`` other than ``identity``: nothing is decompressed
     for a stranger, and the signature is over the bytes as sent;
   * ``413`` when its ``Content-Length`` is over ``max_body_bytes``;
   * ``503`` (with ``Retry-After``) when ``max_receiving`` bodies are being received
     already. It never waits in a queue: Flinks delivers again later.

2. **Read under a deadline and within the bounds.** With ``n`` bytes received, the first
   ``start`` and the last at ``last``, the next chunk must come by::

       min(start + body_timeout, start + grace + n / min_rate, last + grace)

   so a sender must keep up ``min_rate`` bytes per second on average once ``grace`` has
   passed, never go quiet for ``grace``, and finish within ``body_timeout`` in all. A
   sender that falls behind gets ``408`` and its connection closed; nothing is stored.
   With the defaults a connection trickling a byte at a time, or going quiet, lives about
   ``grace`` (2 s), and a 64 MiB body must arrive at 1.1 MiB/s or more; holding one of
   the ``max_receiving`` places for long costs a stranger ``min_rate`` of bandwidth.

   The bytes received count against ``max_receiving_bytes`` as they arrive (a declared
   length takes nothing before it is sent): the body that would go past it gets ``503``
   and its connection closed.

   All bodies together are read at most ``max_receiving_rate`` bytes per second (32 MiB/s)
   after a first second's worth: a flood of forged full-size bodies costs the event loop
   what reading 32 MiB/s costs (a few percent of a core; the HTTP server's own parsing
   of what it is sent comes before any handler, see docs/webhooks.md), whatever the
   attacker's bandwidth. A chunk over the rate waits ``(tat - now) - 1 s``, where ``tat``
   advances by ``len(chunk) / max_receiving_rate`` per chunk from ``max(tat, now)`` (a
   virtual clock, GCRA); the time waited is added to the sender's deadlines.

3. **Verified**: the HMAC-SHA256 of each secret is computed chunk by chunk as the body
   arrives, and compared in constant time once it is in (``401``, nothing stored).

4. **Stored** (see :mod:`flinks_async._webhooks`): ``200`` once the hub holds it, ``400``
   for a body that is not a JSON object, ``503`` when the hub cannot store it.

A body counts against ``max_receiving`` from its admission, and its bytes against
``max_receiving_bytes`` as they arrive, until it is stored or refused. So the memory all
strangers together can make a receiver hold is ``max_receiving_bytes`` (128 MiB by
default) plus the socket buffers of the connections being refused, and no longer than
``body_timeout``; holding every place costs them ``max_receiving * min_rate`` (4 MiB/s)
of bandwidth, holding every byte ``max_receiving_rate`` (32 MiB/s).

A genuine delivery that arrives while strangers hold every place gets ``503``, like any
other POST: Flinks delivers it again (10 attempts, 30 minutes apart), and the call waiting
for it does not wait for that: it polls every ``webhook_poll_interval`` (60 s) as a safety
net, so it gets its data by polling, and the delivery is stored when a later attempt gets
through (for :meth:`~flinks_async.WebhookHub.deliveries`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ._budget import BodyBudget
from ._coordination import WebhookHub
from ._errors import DecodeError
from ._webhooks import SIGNATURE_HEADERS, WebhookDelivery

__all__ = ["MAX_BODY_BYTES", "WebhookLimits", "WebhookReceiver"]

log = logging.getLogger("flinks_async.webhooks")

#: default ``max_body_bytes`` of a receiver: the client's ``max_response_bytes`` default
MAX_BODY_BYTES = 64 * 1024 * 1024
_MiB = 1024 * 1024
#: the size of an HMAC-SHA256, which a well-formed signature header decodes to
_DIGEST_SIZE = hashlib.sha256().digest_size
#: at most one warning a reason per this many seconds (a flood must not flood the log)
_LOG_EVERY = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookLimits:
    """What a :class:`WebhookReceiver` lets a POST hold before its signature is checked
    (see the module docstring for the gates and the deadline's formula).

    Attributes:
        max_body_bytes: larger bodies get ``413`` (default 64 MiB, the client's
            ``max_response_bytes``).
        max_receiving: bodies being received at once (default 64); one more gets ``503``.
        max_receiving_bytes: bytes of bodies being received at once (default 128 MiB:
            two full-size bodies); the body that would go past it gets ``503``.
        body_timeout: seconds for a whole body to arrive (default 60).
        min_rate: bytes per second a body must keep up on average once ``grace`` has
            passed (default 64 KiB/s).
        grace: seconds before ``min_rate`` applies, and the longest a sender may go
            quiet (default 2).
        max_receiving_rate: bytes per second read of all bodies together, past a first
            second's worth (default 32 MiB/s).
        require_length: refuse a body without ``Content-Length`` (chunked) with ``411``
            (default ``True``).
        retry_after: the ``Retry-After`` of a ``503`` for a full receiver (default 60 s).
    """

    max_body_bytes: int = MAX_BODY_BYTES
    max_receiving: int = 64
    max_receiving_bytes: int = 128 * _MiB
    body_timeout: float = 60.0
    min_rate: float = 64 * 1024
    grace: float = 2.0
    max_receiving_rate: float = 32 * _MiB
    retry_after: int = 60
    require_length: bool = True

    def __post_init__(self) -> None:
        numbers = {k: v for k, v in dataclasses.asdict(self).items() if k != "require_length"}
        bad = [name for name, value in numbers.items() if not value > 0]
        if bad:
            raise ValueError(f"WebhookLimits: {', '.join(bad)} must be positive")

    def deadline(self, start: float, received: int, last: float) -> float:
        """When the next chunk must have come, ``received`` bytes in, the last chunk at
        ``last`` (module docstring)."""
        return min(
            start + min(self.body_timeout, self.grace + received / self.min_rate),
            last + self.grace,
        )


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
#: the next chunk of a body, ``None`` at its end
NextChunk = Callable[[], Awaitable[bytes | None]]


@dataclasses.dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    text: str
    #: the body was not read to its end: close the connection, read nothing more of it
    close: bool = False
    headers: tuple[tuple[str, str], ...] = ()


class _SenderGone(Exception):
    """The sender went away before the whole body came."""


class _BadBody(Exception):
    """The body could not be read as sent (a framing the HTTP server refused)."""


class _Refusals:
    """Counts refusals by reason, and logs each reason at most once every ``_LOG_EVERY``
    seconds with how many came since (a flood of junk writes a line per 10 s, not one per
    POST)."""

    def __init__(self, counts: collections.Counter[str]) -> None:
        self.counts = counts
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, reason: str, status: int, text: str, **answer: Any) -> _Answer:
        self.counts[reason] += 1
        now = time.monotonic()
        logged_at, logged_count = self._last.get(reason, (-_LOG_EVERY, 0))
        if now - logged_at >= _LOG_EVERY:
            since = self.counts[reason] - logged_count - 1
            more = f" ({since} more since the last such line)" if since else ""
            log.warning("webhook refused (%d): %s%s", status, reason.replace("_", " "), more)
            self._last[reason] = (now, self.counts[reason])
        return _Answer(status, text, **answer)


class WebhookReceiver:
    """The endpoint Flinks POSTs webhooks to; route it at exactly the URL you register
    (no redirect: a webhook sender counts a ``307`` as a failed delivery):

    * aiohttp.web: ``app.router.add_post("/flinks/webhook", receiver.aiohttp_handler)``;
    * FastAPI / Starlette: the receiver is an ASGI app, routed with Starlette's ``Route``:
      ``app.router.routes.append(Route("/flinks/webhook", receiver, methods=["POST"]))``
      (not ``app.mount()``: a Mount answers ``307`` at its own path);
    * any other ASGI server: the receiver is the app (it answers POST on any path).

    Args:
        hub: where deliveries are stored (``client.webhooks`` shares the client's).
        secrets: the HMAC secret(s) of the Flinks instance; during a rotation give the old
            and the new one. Never shown in reprs or logs.
        header_names: where the signature is read, first header present wins (default
            :data:`~flinks_async._webhooks.SIGNATURE_HEADERS`: both names Flinks documents).
        max_body_bytes: larger bodies get ``413`` (default 64 MiB); sets
            ``limits.max_body_bytes``.
        limits: what a POST may hold before it is verified (:class:`WebhookLimits`).
        budget: deprecated and ignored: a body being received no longer counts against the
            client's ``max_body_bytes_in_flight`` (strangers could fill it), but against
            ``limits``.
    """

    def __init__(
        self,
        hub: WebhookHub,
        secrets: str | Iterable[str],
        *,
        header_names: Iterable[str] = SIGNATURE_HEADERS,
        max_body_bytes: int | None = None,
        limits: WebhookLimits | None = None,
        budget: BodyBudget | None = None,
    ) -> None:
        self._secrets = tuple(s.encode() for s in _listed(secrets))
        if not self._secrets or not all(self._secrets):
            raise ValueError("a WebhookReceiver needs at least one non-empty secret")
        if budget is not None:
            warnings.warn(
                "WebhookReceiver(budget=) is ignored: bodies being received are bounded by "
                "limits=WebhookLimits(...), apart from the client's own bodies",
                DeprecationWarning,
                stacklevel=2,
            )
        limits = limits or WebhookLimits()
        if max_body_bytes is not None:
            limits = dataclasses.replace(limits, max_body_bytes=max_body_bytes)
        self.hub = hub
        self.header_names = tuple(h.lower() for h in header_names)
        self.limits = limits
        #: deliveries stored, repeats dropped, and refusals by reason (``bad_signature``,
        #: ``no_length``, ``encoded``, ``too_big``, ``busy``, ``too_slow``, ``bad_body``,
        #: ``store_failed``), senders ``gone``
        self.counts: collections.Counter[str] = collections.Counter()
        #: bodies, and their bytes, being received now (admitted, not yet stored or refused)
        self.receiving = 0
        self.receiving_bytes = 0
        self._refuse = _Refusals(self.counts)
        self._tat = 0.0  # the read rate's virtual clock (module docstring)

    @property
    def max_body_bytes(self) -> int:
        """Larger bodies get ``413`` (``limits.max_body_bytes``)."""
        return self.limits.max_body_bytes

    def __repr__(self) -> str:
        return (
            f"<WebhookReceiver secrets=*** ({len(self._secrets)}) "
            f"headers={list(self.header_names)} hub={self.hub!r}>"
        )

    # --- the framework-free core ------------------------------------------------------

    async def receive(self, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """Handle one POST whose body is already read, through the same gates:
        ``(status, text)`` to answer. ``headers``' names are matched case-insensitively."""
        chunks = iter((body,))

        async def next_chunk() -> bytes | None:
            return next(chunks, None)

        answer = await self._handle(headers, len(body), next_chunk)
        assert answer is not None  # the sender is never gone
        return answer.status, answer.text

    def _signature(self, headers: Mapping[str, str]) -> bytes | None:
        """The signature header's digest, ``None`` when absent or not Base64 of 32 bytes."""
        lowered = {k.lower(): v for k, v in headers.items()}
        given = next((lowered[h] for h in self.header_names if h in lowered), None)
        if not given:
            return None
        try:
            digest = base64.b64decode(given.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return digest if len(digest) == _DIGEST_SIZE else None

    def _macs(self) -> list[hmac.HMAC]:
        return [hmac.new(secret, digestmod=hashlib.sha256) for secret in self._secrets]

    def _matches(self, macs: list[hmac.HMAC], given: bytes) -> bool:
        ok = False
        for mac in macs:  # every secret compared, in constant time
            ok |= hmac.compare_digest(mac.digest(), given)
        return ok

    async def _store(self, body: bytes) -> _Answer:
        try:
            delivery = WebhookDelivery.from_body(body)
        except DecodeError:
            return self._refuse("bad_body", 400, "not a JSON object")
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
            return _Answer(503, "not stored")
        self.counts["stored" if new else "repeated"] += 1
        return _Answer(200, "ok")

    async def _handle(
        self, headers: Mapping[str, str], length: int | None, next_chunk: NextChunk
    ) -> _Answer | None:
        """One POST through the four gates of the module docstring; ``None`` when the
        sender went away."""
        refused = self._admit(headers, length)
        if refused is not None:
            return refused
        given = self._signature(headers)
        assert given is not None  # _admit checked it
        self.receiving += 1
        held = 0  # what this body holds of max_receiving_bytes: the bytes received
        try:
            limits = self.limits
            macs = self._macs()
            parts: list[bytes] = []
            start = last = asyncio.get_running_loop().time()
            while True:
                try:
                    async with asyncio.timeout_at(limits.deadline(start, held, last)):
                        chunk = await next_chunk()
                except TimeoutError:
                    return self._refuse("too_slow", 408, "body too slow", close=True)
                except _SenderGone:
                    self.counts["gone"] += 1
                    return None
                except _BadBody:
                    return self._refuse("bad_body", 400, "bad body", close=True)
                if chunk is None:
                    break
                if held + len(chunk) > limits.max_body_bytes:
                    return self._refuse("too_big", 413, "too large", close=True)
                if self.receiving_bytes + len(chunk) > limits.max_receiving_bytes:
                    return self._busy()
                self.receiving_bytes += len(chunk)
                held += len(chunk)
                for mac in macs:
                    mac.update(chunk)
                parts.append(chunk)
                waited = await self._pace(len(chunk))
                start += waited
                last = asyncio.get_running_loop().time()
            if not self._matches(macs, given):  # a stranger: no keep-alive for it
                return self._refuse("bad_signature", 401, "bad signature", close=True)
            body = b"".join(parts)
            parts.clear()
            return await self._store(body)
        finally:
            self.receiving -= 1
            self.receiving_bytes -= held

    def _admit(self, headers: Mapping[str, str], length: int | None) -> _Answer | None:
        """Gate 1 of the module docstring: the refusal of a POST before its body is read,
        ``None`` to read it."""
        limits = self.limits
        if self._signature(headers) is None:
            return self._refuse("bad_signature", 401, "bad signature", close=True)
        if length is None and limits.require_length:
            return self._refuse("no_length", 411, "Content-Length required", close=True)
        encoding = next((v for k, v in headers.items() if k.lower() == "content-encoding"), "")
        if encoding.strip().lower() not in ("", "identity"):
            return self._refuse("encoded", 415, "Content-Encoding not accepted", close=True)
        if (length or 0) > limits.max_body_bytes:
            return self._refuse("too_big", 413, "too large", close=True)
        if self.receiving >= limits.max_receiving:
            return self._busy()
        return None

    async def _pace(self, size: int) -> float:
        """Wait while the bodies being read are over ``max_receiving_rate``: the seconds
        waited (module docstring)."""
        now = asyncio.get_running_loop().time()
        self._tat = max(self._tat, now) + size / self.limits.max_receiving_rate
        wait = self._tat - now - 1.0
        if wait <= 0:
            return 0.0
        await asyncio.sleep(wait)
        return wait

    def _busy(self) -> _Answer:
        retry = (("Retry-After", str(self.limits.retry_after)),)
        return self._refuse("busy", 503, "busy, deliver again later", close=True, headers=retry)

    #: gate 1 and the 503, for a server that reads bodies itself (the WSGI app)
    admit, busy = _admit, _busy

    # --- the frameworks -----------------------------------------------------------------

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """The receiver as an aiohttp.web handler (route it for POST)."""
        if request.method != "POST":
            return await _aiohttp_answer(request, _Answer(405, "POST only", close=True))
        content = request.content

        async def next_chunk() -> bytes | None:
            try:
                return await content.readany() or None
            except (ConnectionError, aiohttp.ClientError) as exc:
                raise _SenderGone from exc
            except (web.RequestPayloadError, HttpProcessingError) as exc:
                raise _BadBody from exc

        answer = await self._handle(request.headers, request.content_length, next_chunk)
        return await _aiohttp_answer(request, answer or _Answer(400, "gone", close=True))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The receiver as an ASGI 3 app (a Starlette/FastAPI ``Route``, uvicorn)."""
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
            await _asgi_answer(send, _Answer(405, "POST only", close=True))
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        length = {k.lower(): v for k, v in headers.items()}.get("content-length", "")
        answer = await self._handle(
            headers, int(length) if length.isdigit() else None, _asgi_reader(receive)
        )
        if answer is not None:
            await _asgi_answer(send, answer)


def _asgi_reader(receive: Receive) -> NextChunk:
    """An ASGI request's body, chunk by chunk (:class:`_SenderGone` on a disconnect)."""
    more = True

    async def next_chunk() -> bytes | None:
        nonlocal more
        if not more:
            return None
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _SenderGone
        more = bool(message.get("more_body", False))
        return bytes(message.get("body", b""))

    return next_chunk


async def _aiohttp_answer(request: web.Request, answer: _Answer) -> web.Response:
    response = web.Response(status=answer.status, text=answer.text, headers=answer.headers)
    if answer.close:
        # The body was not read to its end: answer, then close at once (aiohttp would
        # otherwise go on reading the rest of it for up to 10 s to keep the connection)
        response.force_close()
        with contextlib.suppress(ConnectionError):  # the sender is gone already
            await response.prepare(request)
            await response.write_eof()
        request.protocol.force_close()
    return response


async def _asgi_answer(send: Send, answer: _Answer) -> None:
    body = answer.text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in answer.headers),
    ]
    if answer.close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _listed(secrets: str | Iterable[str]) -> tuple[str, ...]:
    return (secrets,) if isinstance(secrets, str) else tuple(secrets)
