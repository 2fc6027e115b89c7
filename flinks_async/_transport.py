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
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel

from . import _events, _otel, _slices
from ._answers import Held, answer_error, read_big, read_body
from ._budget import BodyBudget
from ._config import Settings
from ._coordination import Limiter
from ._errors import (
    ClientClosedError,
    DecodeError,
    FlinksError,
    RateLimitError,
    TransientAPIError,
    TransportError,
)
from ._events import Event, EventHook
from ._guards import FRESH_TOKEN_AGE, Guards
from ._logs import extra, log, log_exchange
from ._retry import parse_retry_after, retry_delay
from ._version import __version__

__all__ = ["Call", "Reply", "Transport"]

#: Failures to reach the server at all (refused, unknown host, connect timeout).
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


@dataclasses.dataclass(slots=True)
class Call:
    """One Flinks HTTP call. ``decode`` turns a 200 body into the result (may raise)."""

    method: str
    url: str
    endpoint: str
    #: this call's own headers (credentials), on top of the session's defaults
    headers: dict[str, str] = dataclasses.field(repr=False)
    body: bytes | None = dataclasses.field(default=None, repr=False)  # personal data
    login_id: str | None = None
    request_id: str | None = None
    decode: Callable[[bytes], Any] | None = None
    #: called before every attempt for headers that must be fresh (a single-use token)
    fresh_headers: Callable[[], Awaitable[dict[str, str]]] | None = None
    #: the settings of a :meth:`FlinksClient.with_options` view (retries, backoff), if any
    settings: Settings | None = None
    #: ``body`` as an aiohttp payload, built on first send and reused by every poll (bytes
    #: payloads are stateless): no payload registry lookup per request
    payload: aiohttp.BytesPayload | None = dataclasses.field(default=None, repr=False)
    #: the same decoding, awaited in slices for a body of ``SLICE_FROM`` bytes or more
    #: (:mod:`flinks_async._slices`): the event loop runs other tasks meanwhile
    decode_big: Callable[[bytes], Awaitable[Any]] | None = None


@dataclasses.dataclass(slots=True)
class Reply:
    """A 200 or 202 answer: ``value`` is ``call.decode(body)`` for a 200 (else ``None``)."""

    status: int
    body: bytes
    value: Any = None


def _drop_tracebacks(error: BaseException | None) -> None:
    """Clear the traceback of ``error`` and of every exception it was caused by or raised
    while handling."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        error.__traceback__ = None
        error = error.__cause__ or error.__context__


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
                raise ClientClosedError(
                    "this FlinksClient was opened in another event loop; create one client "
                    "per event loop (for example inside your app's lifespan)"
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

    async def send(self, call: Call) -> Reply:
        """Send ``call``, retrying transient failures; return its 200/202 :class:`Reply`.

        One flat coroutine on purpose: every await of a request resumes through each
        coroutine frame above it, so the hot path keeps its nesting shallow.
        """
        s = call.settings or self.settings
        session = self.session()
        hooks = self.hooks or _events.scoped_hooks.get()
        debug = log.isEnabledFor(logging.DEBUG)
        timed = bool(hooks) or debug
        limiter = self._limiter
        guards = self.guards
        data = call.payload
        if data is None and call.body is not None:
            data = call.payload = aiohttp.BytesPayload(call.body, content_type="application/json")
        attempt = 0
        minted = 0.0  # when this attempt's authorize token was minted (fresh_headers)
        try:
            while True:
                attempt += 1
                if self._closed:  # closed during a retry sleep
                    raise ClientClosedError(
                        "the FlinksClient was closed during this call",
                        login_id=call.login_id,
                        request_id=call.request_id,
                        endpoint=call.endpoint,
                    )
                if guards.unreachable is not None:
                    raise guards.unreachable
                if guards.setup_error is not None:
                    raise guards.setup_error
                if guards.paused_until:
                    await guards.wait_out_pause()
                if call.fresh_headers is not None:
                    call.headers = {**call.headers, **await call.fresh_headers()}
                    minted = time.monotonic()
                held = limiter is not None
                slot = None
                if limiter is not None:
                    # a just-minted single-use token goes ahead of the queue, never idles behind it
                    slot = await limiter.acquire(priority=call.fresh_headers is not None)
                if hooks:
                    self.emit(
                        Event("request", call.endpoint, call.login_id, call.request_id, attempt)
                    )
                started = time.monotonic() if timed else 0.0
                span = None
                if self.tracer is not None:
                    shown = self.settings.shown_login_id(call.login_id)
                    span = _otel.attempt_span(self.tracer, call, attempt, shown)
                failure: FlinksError | None = None
                retry_after: float | None = None
                status = 0
                read = Held()  # the body's share of the budget, given back after decoding
                try:
                    self.in_flight += 1
                    self.requests_sent += 1
                    try:
                        async with session.request(
                            call.method,
                            call.url,
                            data=data,
                            headers=call.headers or None,
                            allow_redirects=False,
                            proxy=s.proxy,
                        ) as resp:
                            if held:  # the answer began: the request has arrived
                                held = False
                                limiter.release(slot)  # type: ignore[union-attr]
                            guards.answered = True
                            status = resp.status
                            try:
                                length = resp.content_length
                                if (
                                    resp.status < 300
                                    and length is not None
                                    and length <= s.max_response_bytes
                                    and "Content-Encoding" not in resp.headers
                                ):
                                    if not self.budget.try_take(length):
                                        await self.budget.take(length)
                                    read.size = length
                                    if length < _slices.SLICE_FROM:
                                        body = await resp.read()  # the common case, inline
                                    else:  # joined off the event loop
                                        body = await read_big(resp, length)
                                else:
                                    limit = s.max_response_bytes
                                    body = await read_body(resp, call, read, limit, self.budget)
                            except BaseException:
                                resp.close()  # drop the connection: a half-read body is no use
                                raise
                            headers = resp.headers
                    except FlinksError as exc:  # from _read: a redirect, a body over the cap
                        failure = exc
                        if debug:
                            log_exchange(
                                self.settings, call, attempt, started, status, failure, b""
                            )
                        raise
                    except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError) as exc:
                        # TLS refused (untrusted certificate, wrong hostname): retrying can't help
                        failure = TransportError(
                            f"TLS failed: {exc}",
                            login_id=call.login_id,
                            request_id=call.request_id,
                            endpoint=call.endpoint,
                        )
                        raise failure from exc
                    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                        if not guards.answered and isinstance(exc, _CONNECT_ERRORS):
                            guards.count_connect_failure(call, exc)
                        failure = TransportError(
                            f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                            login_id=call.login_id,
                            request_id=call.request_id,
                            endpoint=call.endpoint,
                        )
                        failure.__cause__ = exc
                        body = b""
                    finally:
                        self.in_flight -= 1
                        if held:  # failed or cancelled before any answer
                            held = False
                            limiter.release(slot)  # type: ignore[union-attr]
                    if debug:
                        log_exchange(self.settings, call, attempt, started, status, failure, body)
                    if failure is None:
                        if hooks:
                            self.emit(
                                Event(
                                    "response",
                                    call.endpoint,
                                    call.login_id,
                                    call.request_id,
                                    attempt,
                                    status=status,
                                    elapsed=time.monotonic() - started,
                                )
                            )
                        if status < 300 and call.endpoint not in guards.working:
                            guards.working.add(call.endpoint)
                        if status == 200:
                            if call.decode is None:
                                return Reply(status, body)
                            try:
                                big = call.decode_big
                                if big is not None and len(body) >= _slices.SLICE_FROM:
                                    return Reply(status, body, await big(body))
                                return Reply(status, body, call.decode(body))
                            except DecodeError as exc:
                                exc.login_id, exc.endpoint = call.login_id, call.endpoint
                                exc.request_id = call.request_id
                                exc.http_status = status
                                exc.content_type = headers.get("Content-Type", "")
                                failure = exc
                                if not exc.retryable:
                                    raise  # a complete JSON answer: the same bytes would fail again
                        elif status == 202:
                            return Reply(status, body)
                        else:
                            failure = answer_error(call, status, headers, body)
                            if not isinstance(failure, TransientAPIError):
                                fresh = (
                                    call.fresh_headers is not None
                                    and time.monotonic() - minted < FRESH_TOKEN_AGE
                                )
                                if guards.setup_counts(failure, s, fresh_token=fresh):
                                    guards.count_setup_error(call, failure, fresh_token=fresh)
                                raise failure
                            retry_after = parse_retry_after(headers.get("Retry-After"))
                            if isinstance(failure, RateLimitError):
                                failure.retry_after = retry_after
                                guards.pause(call, retry_after, s)
                finally:
                    if read.size:
                        self.budget.give(read.size)
                    if span is not None:
                        _otel.end_attempt_span(span, status, failure)
                if attempt > s.max_retries:
                    raise failure from failure.__cause__
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
                    self.emit(
                        Event(
                            "retry",
                            call.endpoint,
                            call.login_id,
                            call.request_id,
                            attempt,
                            delay=delay,
                            error=failure,
                        )
                    )
                # Reported above; dropped before the sleep: the tracebacks of the failure and of
                # what caused it hold this frame (whose `failure` holds them) and aiohttp's, a
                # cycle the GC would find only in a full collection (it outlives young ones)
                _drop_tracebacks(failure)
                failure = None
                with anyio.move_on_after(delay):  # or until the client closes: then raise at once
                    await self._closing.wait()
                if guards.unreachable is not None:
                    raise guards.unreachable
        except BaseException:
            # the error's traceback holds this frame: it must not hold the error (a cycle
            # left for the GC, with every frame and object the traceback reaches)
            failure = None
            raise
