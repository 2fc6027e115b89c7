"""HTTP transport: one aiohttp session, body limits, error mapping and retries.

One :meth:`Transport.send` is one logical Flinks call. It is retried (see
:mod:`flinks_async._retry` for the formula) on:

* connection errors, resets, read/connect/request timeouts, torn bodies;
* HTTP 429 and every 5xx;
* the FlinksCodes ``AGGREGATION_ERROR``, ``RETRY_LATER``, ``CARD_IN_USE``,
  ``CONCURRENT_SESSION``, ``TOO_MANY_REQUESTS``;
* a 200 whose body does not decode (an HTML page from a proxy, a truncated JSON text).

``SESSION_NONEXISTENT``/``SESSION_EXPIRED`` raise :class:`SessionExpiredError` at once
(the poller re-authorizes). Everything else raises its typed :class:`APIError` at once.
Redirects are never followed (credentials must not travel to another host).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol

import aiohttp
import anyio
import anyio.lowlevel

from . import _events, _otel
from ._answers import Held, answer_error, read_body
from ._budget import BodyBudget
from ._config import Settings
from ._coordination import Limiter
from ._decoding import Decoder, decode_answer
from ._errors import (
    ClientClosedError,
    DecodeError,
    FlinksError,
    RateLimitError,
    TransientAPIError,
    TransportError,
    drop_tracebacks,
)
from ._events import Event, EventHook
from ._guards import FRESH_TOKEN_AGE, Guards
from ._logs import extra, log, log_exchange
from ._retry import parse_retry_after, retry_delay
from ._version import __version__

__all__ = ["Reply", "Request", "Sender", "Transport"]

#: Failures to reach the server at all (refused, unknown host, connect timeout).
_Verdict = tuple["Reply | None", "FlinksError | None", "float | None", bool]  # see _judge
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_NO_HEADERS: Mapping[str, str] = {}


#: the no-op closes of pools let go with their dead loop (kept until done: RUF006)
_CLOSING: set[asyncio.Future[None]] = set()


@dataclasses.dataclass(slots=True)
class Request:
    """One Flinks HTTP call. ``decode`` turns a 200 body into the result (may raise), in
    one go or, for a body of ``SLICE_FROM`` bytes or more, in slices
    (:func:`~flinks_async._decoding.decode_answer`)."""

    method: str
    url: str
    endpoint: str
    #: this call's own headers (credentials), on top of the session's defaults
    headers: dict[str, str] = dataclasses.field(repr=False)
    body: bytes | None = dataclasses.field(default=None, repr=False)  # personal data
    login_id: str | None = None
    request_id: str | None = None
    decode: Decoder | None = None
    #: called before every attempt for headers that must be fresh (a single-use token)
    fresh_headers: Callable[[], Awaitable[dict[str, str]]] | None = None
    #: the settings of a :meth:`FlinksClient.with_options` view (retries, backoff), if any
    settings: Settings | None = None
    #: ``body`` as an aiohttp payload, built on first send and reused by every poll (bytes
    #: payloads are stateless): no payload registry lookup per request
    payload: aiohttp.BytesPayload | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(slots=True)
class Reply:
    """A 200 or 202 answer: ``value`` is ``call.decode(body)`` for a 200 (else ``None``)."""

    status: int
    body: bytes
    value: Any = None


class Sender(Protocol):
    """Send one request, get one answer: what polling (:func:`~flinks_async._polling.run_plan`)
    and :class:`~flinks_async._authorize.Authorizer` need of the transport, so that they
    can be driven by a fake in tests. :class:`Transport` is the real one."""

    #: the client's event hooks (events are emitted through :meth:`emit`)
    hooks: tuple[EventHook, ...]
    #: the client's body budget (a pushed webhook's body holds its share while decoded)
    budget: BodyBudget
    #: the client's pause and breakers (Authorize sends the first token request alone)
    guards: Guards

    async def send(self, call: Request) -> Reply:
        """``call`` sent (and retried): its 200 (decoded) or 202 :class:`Reply`, or the
        typed error."""

    def emit(self, event: Event) -> None:
        """Hand ``event`` to the hooks."""


def _transport_error(call: Request, message: str) -> TransportError:
    """A :class:`TransportError` of ``call``."""
    return TransportError(
        message, login_id=call.login_id, request_id=call.request_id, endpoint=call.endpoint
    )


class Transport:
    """Owns the aiohttp session; created lazily inside the running event loop."""

    def __init__(
        self,
        settings: Settings,
        hooks: tuple[EventHook, ...] = (),
        tracer: Any = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.settings = settings
        self.hooks = hooks
        self.tracer = tracer
        self.in_flight = 0
        self.requests_sent = 0
        #: the session's headers, sent with every request; a call adds only its own (the
        #: API key), so aiohttp merges one entry per request, or none
        self.default_headers = {
            "User-Agent": f"flinks-async/{__version__}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: anyio.Event  # set by aclose() or the breaker; made with the session
        self._closed = False
        #: the rate limiter the client chose (see flinks_async._coordination), or None
        self._limiter = limiter
        #: bytes of bodies held at once (``max_body_bytes_in_flight``, see ``_budget``)
        self.budget = BodyBudget(settings.max_body_bytes_in_flight)
        self._rng = random.Random()
        #: the 429 pause and the breakers (see flinks_async._guards)
        self.guards = Guards(settings, self._rng)
        self.guards.wake = self._wake
        self._timeout = aiohttp.ClientTimeout(
            total=settings.request_timeout,
            sock_connect=settings.connect_timeout,
            sock_read=settings.read_timeout,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def session(self) -> aiohttp.ClientSession:
        """The session, created on first use (it must be created inside the running loop).

        Raises :class:`ClientClosedError` once the client is closed, or when called from
        another event loop than the one the session was created in.
        """
        if self._closed:
            raise ClientClosedError("this FlinksClient is closed; open a new one")
        if self._session is not None:
            if self._loop is not asyncio.get_running_loop():
                self._let_go_of_a_dead_loop()
                raise ClientClosedError(
                    "this FlinksClient was opened in another event loop (each asyncio.run() "
                    "starts a new one); create one client per event loop (for example inside "
                    "your app's lifespan), or, from sync code (Django, Celery, scripts), use "
                    "SyncFlinksClient: it keeps one loop for all its calls"
                )
            return self._session
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self._closing = anyio.Event()
        connector = aiohttp.TCPConnector(
            limit=s.max_connections,
            limit_per_host=0,
            ttl_dns_cache=300,
            keepalive_timeout=30,
            ssl=s.ssl,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self.default_headers,
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=s.trust_env,
            raise_for_status=False,
        )
        return self._session

    def _let_go_of_a_dead_loop(self) -> None:
        """The session's loop is closed (its ``asyncio.run()`` returned): nothing can close
        its connections any more, so mark it and its pool closed, without the "Unclosed
        client session" / "Unclosed connector" warnings their collection would print."""
        session, loop = self._session, self._loop
        if session is None or loop is None or not loop.is_closed():
            return  # a loop still running (another thread's): leave it be
        self._session = None
        self._closed = True
        connector = session.connector
        session.detach()
        if connector is not None:  # on a closed loop, close() only marks it closed
            closing = asyncio.ensure_future(connector.close())  # (and returns a no-op)
            _CLOSING.add(closing)
            closing.add_done_callback(_CLOSING.discard)

    async def aclose(self) -> None:
        """Close the session and every pooled connection. Idempotent."""
        self._closed = True
        if self._session is not None:
            self._closing.set()  # wakes calls sleeping before a retry
        session, self._session = self._session, None
        if session is not None:
            with anyio.CancelScope(shield=True):
                await session.close()
                # transports close their sockets one loop turn later
                await anyio.lowlevel.checkpoint()

    def _wake(self) -> None:
        """Wake the calls sleeping before a retry (a breaker tripped: they raise it now)."""
        if self._session is not None:
            self._closing.set()

    def setup_in_doubt(self, exc: BaseException) -> bool:
        """See :meth:`Guards.setup_in_doubt`."""
        return self.guards.setup_in_doubt(exc)

    def emit(self, event: Event) -> None:
        if self.hooks or _events.scoped_hooks.get():
            _events.dispatch(self.hooks, event)

    async def send(self, call: Request) -> Reply:
        """Send ``call``, retrying transient failures; return its 200/202 :class:`Reply`.
        Each attempt: :meth:`_ready` (breakers, pause, token, limiter), :meth:`_exchange`
        (the request and its body), :meth:`_judge` (decode a 200, or the answer's error);
        a retryable failure waits :meth:`_retrying`. Two frames deep at most: every await
        of a request resumes through each frame above it."""
        s = call.settings or self.settings
        session = self.session()
        hooks = self.hooks or _events.scoped_hooks.get()
        debug = log.isEnabledFor(logging.DEBUG)
        if call.payload is None and call.body is not None:
            call.payload = aiohttp.BytesPayload(call.body, content_type="application/json")
        attempt = 0
        minted = 0.0  # when this attempt's authorize token was minted (fresh_headers)
        failure: FlinksError | None = None
        try:
            while True:
                attempt += 1
                minted, slot = self._ready_now(call, minted) or await self._ready(call, minted)
                span = self._begin(call, attempt, hooks)
                started = time.monotonic() if hooks or debug else 0.0
                status, retry_after = 0, None
                read = Held()  # the body's share of the budget, given back after decoding
                try:
                    try:
                        status, body, headers, failure = await self._exchange(
                            session, call, s, read, slot, attempt, started, debug
                        )
                    except FlinksError as exc:  # not retried (a redirect, TLS, a body too big)
                        failure = exc
                        raise
                    if debug:
                        log_exchange(self.settings, call, attempt, started, status, failure, body)
                    if failure is None:
                        v: _Verdict | Coroutine[Any, Any, _Verdict] | None = self._judge(
                            call, s, status, body, headers, attempt, started, minted, hooks
                        )  # a tuple, or for a 200 to decode a coroutine
                        reply, failure, retry_after, final = v if isinstance(v, tuple) else await v  # type: ignore[misc]
                        if reply is not None:
                            return reply
                        if final:
                            raise failure  # type: ignore[misc]
                finally:
                    if read.size:
                        self.budget.give(read.size)
                    if span is not None:
                        _otel.end_attempt_span(span, status, failure)
                assert failure is not None
                if attempt > s.max_retries:
                    raise failure from failure.__cause__
                delay = self._retrying(call, s, attempt, failure, retry_after, hooks, debug)
                failure = v = None  # its tracebacks are dropped (see _retrying)
                with anyio.move_on_after(delay):  # or until the client closes: then raise at once
                    await self._closing.wait()
                if self.guards.unreachable is not None:
                    raise self.guards.unreachable
        except BaseException:  # its traceback holds this frame, which must not hold
            failure = v = None  # the error (nor v): a cycle left for the GC, with all frames
            raise

    def _begin(self, call: Request, attempt: int, hooks: Any) -> Any:
        """An attempt begins: its ``request`` event, and its span (returned) if tracing."""
        if hooks:
            self.emit(Event("request", call.endpoint, call.login_id, call.request_id, attempt))
        if self.tracer is None:
            return None
        shown = self.settings.shown_login_id(call.login_id)
        return _otel.attempt_span(self.tracer, call, attempt, shown)

    def _ready_now(self, call: Request, minted: float) -> tuple[float, Any] | None:
        """:meth:`_ready` when it has nothing to wait for (the default: no coroutine)."""
        if self._closed or self.guards.paused_until or self._limiter is not None:
            return None
        if call.fresh_headers is not None:  # a token to take first
            return None
        self.guards.check(call)  # the breakers
        return minted, None

    async def _ready(self, call: Request, minted: float) -> tuple[float, Any]:
        """Before an attempt: raise if the client closed or a breaker tripped, wait out a
        429 pause, take fresh headers (a single-use token), then the rate limiter's slot.
        Returns when that token was minted (``minted`` when there is none) and the slot."""
        if self._closed:  # closed during a retry sleep
            raise ClientClosedError(
                "the FlinksClient was closed during this call",
                login_id=call.login_id,
                request_id=call.request_id,
                endpoint=call.endpoint,
            )
        guards = self.guards
        guards.check(call)  # the breakers
        if guards.paused_until:
            await guards.wait_out_pause()
        if call.fresh_headers is not None:
            call.headers = {**call.headers, **await call.fresh_headers()}
            minted = time.monotonic()
        if self._limiter is None:
            return minted, None
        # a just-minted single-use token goes ahead of the queue, never idles behind it
        return minted, await self._limiter.acquire(priority=call.fresh_headers is not None)

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        call: Request,
        s: Settings,
        read: Held,
        slot: Any,
        attempt: int,
        started: float,
        debug: bool,
    ) -> tuple[int, bytes, Mapping[str, str], TransportError | None]:
        """One request: its answer's status, body and headers (the limiter's ``slot`` is
        given back when the answer begins). A failure to retry is returned (connection,
        timeout, torn body); one retrying cannot help is raised (TLS refused, a
        redirect, a body over ``max_response_bytes``)."""
        limiter = self._limiter
        held = limiter is not None
        status = 0
        self.in_flight += 1
        self.requests_sent += 1
        try:
            async with session.request(
                call.method,
                call.url,
                data=call.payload,
                headers=call.headers or None,
                allow_redirects=False,
                proxy=s.proxy,
            ) as resp:
                if held:  # the answer began: the request has arrived
                    held = False
                    limiter.release(slot)  # type: ignore[union-attr]
                self.guards.answered = True
                status = resp.status
                try:
                    body = await read_body(resp, call, read, s.max_response_bytes, self.budget)
                except BaseException:
                    resp.close()  # drop the connection: a half-read body is no use
                    raise
                return status, body, resp.headers, None
        except FlinksError as exc:  # from _read: a redirect, a body over the cap
            if debug:
                log_exchange(self.settings, call, attempt, started, status, exc, b"")
            raise
        except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError) as exc:
            # TLS refused (untrusted certificate, wrong hostname): retrying can't help
            raise _transport_error(call, f"TLS failed: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if not self.guards.answered and isinstance(exc, _CONNECT_ERRORS):
                self.guards.count_connect_failure(call, exc)
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            failure = _transport_error(call, text)
            failure.__cause__ = exc
            return status, b"", _NO_HEADERS, failure
        finally:
            self.in_flight -= 1
            if held:  # failed or cancelled before any answer
                limiter.release(slot)  # type: ignore[union-attr]

    def _judge(
        self,
        call: Request,
        s: Settings,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        attempt: int,
        started: float,
        minted: float,
        hooks: Any,
    ) -> _Verdict | Coroutine[Any, Any, _Verdict]:
        """What an answer means: ``(reply, None, None, False)`` for a 202 or a 200 (a
        coroutine giving it decoded: :meth:`_decoded`; no coroutine for the rest); else
        ``(None, failure, retry_after, final)``, ``final`` when retrying cannot help (a JSON
        answer that does not decode, a non-transient error; the set-up breaker counts it)."""
        if hooks:
            where = (call.endpoint, call.login_id, call.request_id, attempt)
            elapsed = time.monotonic() - started
            self.emit(Event("response", *where, status=status, elapsed=elapsed))
        guards = self.guards
        if status < 300 and call.endpoint not in guards.working:
            guards.working.add(call.endpoint)
        if status == 200:
            if call.decode is None:
                return Reply(status, body), None, None, False
            return self._decoded(call, call.decode, body, headers)  # awaited by send
        if status == 202:
            return Reply(status, body), None, None, False
        failure = answer_error(call, status, headers, body)
        if not isinstance(failure, TransientAPIError):
            fresh = call.fresh_headers is not None and time.monotonic() - minted < FRESH_TOKEN_AGE
            if guards.setup_counts(failure, s, fresh_token=fresh):
                guards.count_setup_error(call, failure, fresh_token=fresh)
            guards.count_unsubscribed(call, failure)
            return None, failure, None, True
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if isinstance(failure, RateLimitError):
            failure.retry_after = retry_after
            guards.pause(call, retry_after, s)
        return None, failure, retry_after, False

    async def _decoded(
        self, call: Request, decode: Decoder, body: bytes, headers: Mapping[str, str]
    ) -> _Verdict:
        """:meth:`_judge`'s verdict on a 200 (a coroutine: a big body is decoded in slices)."""
        try:
            value = await decode_answer(
                decode, body, login_id=call.login_id, endpoint=call.endpoint,
                request_id=call.request_id, http_status=200, headers=headers,
            )  # fmt: skip
        except DecodeError as exc:  # a complete JSON answer: the same bytes would fail again
            return None, exc, None, not exc.retryable
        return Reply(200, body, value), None, None, False

    def _retrying(
        self,
        call: Request,
        s: Settings,
        attempt: int,
        failure: FlinksError,
        retry_after: float | None,
        hooks: Any,
        debug: bool,
    ) -> float:
        """The wait before the next attempt (:func:`~flinks_async._retry.retry_delay`),
        logged and reported as a ``retry`` event; then ``failure``'s tracebacks dropped:
        they hold the frame of :meth:`send` (whose ``failure`` holds them) and aiohttp's, a
        cycle the GC would find only in a full collection (it outlives young ones)."""
        delay = retry_delay(
            attempt,
            retry_after,
            initial=s.backoff_initial,
            maximum=s.backoff_max,
            max_retry_after=s.max_retry_after,
            rng=self._rng,
        )
        if debug:
            log.debug(
                "retry %s %s in %.3fs after attempt %d: %s",
                call.method,
                call.endpoint,
                delay,
                attempt,
                failure,
                extra=extra(self.settings, call, attempt=attempt, delay=delay),
            )
        if hooks:
            where = (call.endpoint, call.login_id, call.request_id, attempt)
            self.emit(Event("retry", *where, delay=delay, error=failure))
        drop_tracebacks(failure)
        return delay
