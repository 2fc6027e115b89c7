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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import msgspec
from yarl import URL

from . import _events, _otel
from ._budget import BodyBudget
from ._config import Settings
from ._coordination import Limiter
from ._errors import (
    SETUP_ERRORS,
    APIError,
    ClientClosedError,
    DecodeError,
    FlinksError,
    InvalidRequestError,
    MFARequiredError,
    RateLimitError,
    ResponseTooLargeError,
    ServerUnreachableError,
    SetupError,
    TransientAPIError,
    TransportError,
    api_error_for,
    setup_error_for,
)
from ._events import Event, EventHook
from ._models import ErrorBody, decoder_for
from ._retry import RETRY_AFTER_JITTER, parse_retry_after, retry_delay

__all__ = ["Call", "Reply", "Transport"]

#: Failures to reach the server at all (refused, unknown host, connect timeout).
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)

log = logging.getLogger("flinks_async")
_ERROR_DECODER = decoder_for(ErrorBody)


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


class _Held:
    """How many bytes of the budget one attempt's body holds."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0


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
        #: sent with every request (set by the client before the session opens)
        self.default_headers: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: anyio.Event  # set by aclose() or the breaker; made with the session
        self._closed = False
        #: the rate limiter the client chose (see flinks_async._coordination), or None
        self._limiter = limiter
        #: bytes of bodies held at once (``max_body_bytes_in_flight``, see ``_budget``)
        self.budget = BodyBudget(settings.max_body_bytes_in_flight)
        # A 429 / TOO_MANY_REQUESTS pauses every new request of the client until then.
        self._paused_until = 0.0
        self._pause_length = 0.0
        # circuit breaker: connection failures in a row while the server never answered
        self._answered = False
        self._connect_failures = 0
        self._unreachable: ServerUnreachableError | None = None
        #: the set-up breaker (``stop_on_setup_error``): endpoints that answered a 2xx, and
        #: the logins an endpoint that never did answered a set-up error for
        self._working: set[str] = set()
        self._setup_failures: dict[str, set[str]] = {}
        self._setup_error: SetupError | None = None
        self._rng = random.Random()
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
        data = call.payload
        if data is None and call.body is not None:
            data = call.payload = aiohttp.BytesPayload(call.body, content_type="application/json")
        attempt = 0
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
                if self._unreachable is not None:
                    raise self._unreachable
                if self._setup_error is not None:
                    raise self._setup_error
                if self._paused_until:
                    await self._wait_out_pause()
                if call.fresh_headers is not None:
                    call.headers = {**call.headers, **await call.fresh_headers()}
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
                span = self._start_span(call, attempt) if self.tracer is not None else None
                failure: FlinksError | None = None
                retry_after: float | None = None
                status = 0
                read = _Held()  # the body's share of the budget, given back after decoding
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
                            self._answered = True
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
                                    body = await resp.read()  # the common case, inline
                                else:
                                    body = await self._read(resp, call, read)
                            except BaseException:
                                resp.close()  # drop the connection: a half-read body is no use
                                raise
                            headers = resp.headers
                    except FlinksError as exc:  # from _read: a redirect, a body over the cap
                        failure = exc
                        if debug:
                            self._log_exchange(call, attempt, started, status, failure, b"")
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
                        if not self._answered and isinstance(exc, _CONNECT_ERRORS):
                            self._count_connect_failure(call, exc)
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
                        self._log_exchange(call, attempt, started, status, failure, body)
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
                        if call.endpoint not in self._working and status < 300:
                            self._working.add(call.endpoint)
                        if status == 200:
                            if call.decode is None:
                                return Reply(status, body)
                            try:
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
                            failure = self._error(call, status, headers, body)
                            if not isinstance(failure, TransientAPIError):
                                if self._setup_counts(failure, s):
                                    self._count_setup_error(call, failure)
                                raise failure
                            retry_after = parse_retry_after(headers.get("Retry-After"))
                            if isinstance(failure, RateLimitError):
                                failure.retry_after = retry_after
                                self._pause(call, retry_after)
                finally:
                    if read.size:
                        self.budget.give(read.size)
                    if span is not None:
                        self._end_span(span, status, failure)
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
                        extra=self._extra(call, attempt=attempt, delay=delay),
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
                if self._unreachable is not None:
                    raise self._unreachable
        except BaseException:
            # the error's traceback holds this frame: it must not hold the error (a cycle
            # left for the GC, with every frame and object the traceback reaches)
            failure = None
            raise

    def _count_connect_failure(self, call: Call, exc: BaseException) -> None:
        """Trip the breaker after ``unreachable_after`` connection failures in a row with no
        answer ever received: the base URL is wrong or the host down; stop retrying."""
        limit = self.settings.unreachable_after
        self._connect_failures += 1
        if limit is None or self._connect_failures < limit or self._unreachable is not None:
            return
        host = URL(call.url).host or "the server"
        self._unreachable = ServerUnreachableError(
            f"{host} never answered: {self._connect_failures} connection attempts in a row "
            f"failed ({type(exc).__name__}: {exc}); check base_url (unreachable_after="
            f"{limit})",
            endpoint=call.endpoint,
        )
        self._unreachable.__cause__ = exc
        if self._session is not None:
            self._closing.set()  # wake the calls sleeping before a retry: they raise it now
        raise self._unreachable

    def setup_in_doubt(self, exc: BaseException) -> bool:
        """Whether ``exc`` is an answer the set-up breaker counts that has not tripped it
        yet (its endpoint never answered a 2xx): it may be the key, not the login, so a
        queue worker retries it later instead of writing a final line."""
        return isinstance(exc, APIError) and self._setup_counts(exc, self.settings)

    def _setup_counts(self, failure: APIError, s: Settings) -> bool:
        """Whether the set-up breaker counts ``failure`` (see :class:`SetupError`)."""
        code, status = failure.flinks_code, failure.http_status
        return (
            s.stop_on_setup_error
            and failure.endpoint not in self._working
            and (
                (status in (401, 403) and code in (None, "UNAUTHORIZED"))
                or (status == 404 and code is None)
            )
        )

    def _count_setup_error(self, call: Call, failure: APIError) -> None:
        """Trip the set-up breaker (see :class:`SetupError`) when this answer, one it
        counts, makes the set-up error plain."""
        if self._setup_error is not None:  # tripped while this request was out
            raise self._setup_error
        code, status = failure.flinks_code, failure.http_status
        logins = self._setup_failures.setdefault(call.endpoint, set())
        logins.add((call.login_id or "").lower())
        if call.login_id is not None and len(logins) < SETUP_ERRORS:
            return
        if status == 404:
            host = URL(call.url).host or "the server"
            what = f"base_url and investments_url: {host}{URL(call.url).path} does not exist"
        elif call.login_id is None:
            what = "secret_key (FLINKS_SECRET_KEY) and the customer id (FLINKS_CUSTOMER_ID)"
        else:
            what = "api_key (FLINKS_API_KEY), secret_key and the customer id (FLINKS_CUSTOMER_ID)"
        many = f" for {len(logins)} different logins" if call.login_id is not None else ""
        said = f'{code or "no FlinksCode"}, "{failure.message[:200]}"'
        self._setup_error = setup_error_for(status)(
            f"set-up error: {call.endpoint} answered HTTP {status} ({said}){many} and has "
            f"never succeeded; check {what}. Every call of this client now stops here",
            flinks_code=code,
            http_status=status,
            endpoint=call.endpoint,
        )
        if self._session is not None:
            self._closing.set()  # wake the calls sleeping before a retry: they raise it now
        raise self._setup_error

    def _pause(self, call: Call, retry_after: float | None) -> None:
        """Flinks said "too many requests": hold every new request of this client for
        ``min(Retry-After, max_retry_after)`` (``backoff_initial`` without the header)."""
        s = call.settings or self.settings
        length = s.backoff_initial if retry_after is None else min(retry_after, s.max_retry_after)
        now = time.monotonic()
        if length <= 0 or now + length <= self._paused_until:
            return
        if self._paused_until <= now:
            log.info(
                "Flinks answered TOO_MANY_REQUESTS to %s: pausing new requests for %.3fs",
                call.endpoint,
                length,
                extra=self._extra(call, pause=length),
            )
        self._paused_until = now + length
        self._pause_length = length

    async def _wait_out_pause(self) -> None:
        """Sleep out a client-wide pause, plus a jitter of up to ``RETRY_AFTER_JITTER`` of
        its length so the held requests do not all go out at the same instant."""
        left = self._paused_until - time.monotonic()
        if left > 0:
            await anyio.sleep(left + self._rng.uniform(0, RETRY_AFTER_JITTER * self._pause_length))

    def _start_span(self, call: Call, attempt: int) -> Any:
        return self.tracer.start_span(
            f"{call.method} {call.endpoint}",
            attributes={
                "http.request.method": call.method,
                "flinks.endpoint": call.endpoint,
                "flinks.attempt": attempt,
                "flinks.login_id": self.settings.shown_login_id(call.login_id),
                "flinks.request_id": call.request_id or "",
            },
        )

    @staticmethod
    def _end_span(span: Any, status: int, failure: FlinksError | None) -> None:
        if status:
            span.set_attribute("http.response.status_code", status)
        if failure is not None:
            _otel.error_status(span, failure)
        span.end()

    async def _read(self, resp: aiohttp.ClientResponse, call: Call, read: _Held) -> bytes:
        """The body, refusing more than ``max_response_bytes`` (counted after decompression),
        each part taken from the budget (``read.size`` says how much is held)."""
        if resp.status in (301, 302, 303, 307, 308):
            location = resp.headers.get("Location", "")
            host = URL(location).host if location else None
            raise InvalidRequestError(
                f"unexpected redirect to {host or 'an unknown host'}; not followed",
                http_status=resp.status,
                login_id=call.login_id,
                request_id=call.request_id,
                endpoint=call.endpoint,
            )
        limit = self.settings.max_response_bytes
        length = resp.content_length
        if length is not None:
            if length > limit:
                raise self._too_large(call, limit)
            if "Content-Encoding" not in resp.headers:
                if not self.budget.try_take(length):
                    await self.budget.take(length)
                read.size = length
                return await resp.read()
        budget = self.budget
        chunks: list[bytes] = []
        while chunk := await resp.content.readany():
            size = len(chunk)
            if read.size + size > limit:
                raise self._too_large(call, limit)
            if not budget.try_take(size, read.size):
                await budget.take(size, read.size)
            read.size += size
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, call: Call, limit: int) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"response body over max_response_bytes={limit}",
            login_id=call.login_id,
            request_id=call.request_id,
            endpoint=call.endpoint,
        )

    def _error(self, call: Call, status: int, headers: Mapping[str, str], body: bytes) -> APIError:
        """The typed error for a non-200/202 answer (keyed on FlinksCode, then status)."""
        code: str | None = None
        request_id = call.request_id
        challenges = None
        try:
            env = _ERROR_DECODER.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            kind = headers.get("Content-Type", "").split(";")[0] or "no content type"
            message = f"HTTP {status} with a non-JSON body ({kind}, {len(body)} bytes)"
        else:
            code = env.flinks_code.strip().upper() if env.flinks_code else None
            message = (env.message or "")[:500] or f"HTTP {status}"
            request_id = env.request_id or request_id
            challenges = env.security_challenges
        error = api_error_for(code, status)(
            message,
            flinks_code=code,
            http_status=status,
            login_id=call.login_id,
            request_id=request_id,
            endpoint=call.endpoint,
        )
        if isinstance(error, MFARequiredError):
            error.challenges = list(challenges or ())
            if error.message == f"HTTP {status}" and error.challenges:
                error.message = f"the institution asks {len(error.challenges)} MFA question(s)"
        return error

    def _extra(self, call: Call, **fields: object) -> dict[str, object]:
        login = self.settings.shown_login_id(call.login_id)
        return {
            "flinks_method": call.method,
            "flinks_endpoint": call.endpoint,
            "flinks_login_id": login,
            "flinks_request_id": call.request_id,
            **{f"flinks_{k}": v for k, v in fields.items()},
        }

    def _log_exchange(
        self,
        call: Call,
        attempt: int,
        started: float,
        status: int,
        error: FlinksError | None,
        body: bytes,
    ) -> None:
        elapsed = time.monotonic() - started
        extra = self._extra(call, attempt=attempt, status=status or None, elapsed=elapsed)
        log.debug(
            "%s %s -> %s attempt=%d elapsed=%.3fs request_id=%s login=%s",
            call.method,
            call.endpoint,
            status if error is None else error,
            attempt,
            elapsed,
            call.request_id or "-",
            extra["flinks_login_id"] or "-",
            extra=extra,
        )
        if self.settings.log_bodies and error is None:
            log.debug("body of %s (%d bytes): %r", call.endpoint, len(body), body[:2048])
