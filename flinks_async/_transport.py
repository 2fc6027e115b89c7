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

import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import msgspec
from yarl import URL

from . import _events
from ._config import Settings
from ._errors import (
    APIError,
    DecodeError,
    FlinksError,
    RateLimitError,
    ResponseTooLargeError,
    TransientAPIError,
    TransportError,
    api_error_for,
)
from ._events import Event, EventHook
from ._models import ErrorBody, decoder_for
from ._redact import short_id
from ._retry import RateLimiter, parse_retry_after, retry_delay
from ._version import __version__

__all__ = ["Call", "Reply", "Transport"]

log = logging.getLogger("flinks_async")
_ERROR_DECODER = decoder_for(ErrorBody)
_USER_AGENT = f"flinks-async/{__version__}"


@dataclasses.dataclass(slots=True)
class Call:
    """One Flinks HTTP call. ``decode`` turns a 200 body into the result (may raise)."""

    method: str
    url: str
    endpoint: str
    headers: dict[str, str] = dataclasses.field(repr=False)  # holds credentials
    body: bytes | None = dataclasses.field(default=None, repr=False)  # personal data
    login_id: str | None = None
    request_id: str | None = None
    decode: Callable[[bytes], Any] | None = None
    #: called before every attempt for headers that must be fresh (a single-use token)
    fresh_headers: Callable[[], Awaitable[dict[str, str]]] | None = None


@dataclasses.dataclass(slots=True)
class Reply:
    """A 200 or 202 answer: ``value`` is ``call.decode(body)`` for a 200 (else ``None``)."""

    status: int
    body: bytes
    value: Any = None


class _Retryable(Exception):
    """Internal: this attempt failed transiently; ``error`` is what to raise if it was the last."""

    def __init__(self, error: FlinksError, retry_after: float | None = None) -> None:
        self.error = error
        self.retry_after = retry_after


class Transport:
    """Owns the aiohttp session; created lazily inside the running event loop."""

    def __init__(self, settings: Settings, hooks: tuple[EventHook, ...] = ()) -> None:
        self.settings = settings
        self.hooks = hooks
        self.in_flight = 0
        self.requests_sent = 0
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._limiter = RateLimiter(settings.rate_limit) if settings.rate_limit else None
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
        """The session, created on first use (it must be created inside the running loop)."""
        if self._closed:
            raise RuntimeError("this FlinksClient is closed")
        if self._session is None:
            s = self.settings
            connector = aiohttp.TCPConnector(
                limit=s.max_connections,
                limit_per_host=0,
                ttl_dns_cache=300,
                keepalive_timeout=30,
                ssl=s.ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"User-Agent": _USER_AGENT, "Accept": "application/json"},
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=s.trust_env,
                raise_for_status=False,
            )
        return self._session

    async def aclose(self) -> None:
        """Close the session and every pooled connection. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            with anyio.CancelScope(shield=True):
                await session.close()

    def emit(self, event: Event) -> None:
        if self.hooks or _events.scoped_hooks.get():
            _events.dispatch(self.hooks, event)

    async def send(self, call: Call) -> Reply:
        """Send ``call``, retrying transient failures; return its 200/202 :class:`Reply`."""
        s = self.settings
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(call, attempt)
            except _Retryable as failure:
                if attempt > s.max_retries:
                    raise failure.error from failure.error.__cause__
                delay = retry_delay(
                    attempt,
                    failure.retry_after,
                    initial=s.backoff_initial,
                    maximum=s.backoff_max,
                    max_retry_after=s.max_retry_after,
                    rng=self._rng,
                )
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "retry %s %s in %.3fs after attempt %d: %s",
                        call.method,
                        call.endpoint,
                        delay,
                        attempt,
                        failure.error,
                        extra=self._extra(call, attempt=attempt, delay=delay),
                    )
                self.emit(
                    Event(
                        "retry",
                        call.endpoint,
                        call.login_id,
                        call.request_id,
                        attempt,
                        delay=delay,
                        error=failure.error,
                    )
                )
                await anyio.sleep(delay)

    async def _attempt(self, call: Call, attempt: int) -> Reply:
        session = self.session()
        if call.fresh_headers is not None:
            call.headers = {**call.headers, **await call.fresh_headers()}
        if self._limiter is not None:
            await self._limiter.acquire()
        self.emit(Event("request", call.endpoint, call.login_id, call.request_id, attempt))
        started = time.monotonic()
        self.in_flight += 1
        self.requests_sent += 1
        status = 0
        try:
            status, content_type, retry_after, body = await self._exchange(session, call)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = TransportError(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                login_id=call.login_id,
                request_id=call.request_id,
                endpoint=call.endpoint,
            )
            error.__cause__ = exc
            self._log_exchange(call, attempt, started, None, error)
            raise _Retryable(error) from exc
        finally:
            self.in_flight -= 1
        elapsed = time.monotonic() - started
        self._log_exchange(call, attempt, started, status, None)
        if self.settings.log_bodies and log.isEnabledFor(logging.DEBUG):
            log.debug("body of %s (%d bytes): %r", call.endpoint, len(body), body[:2048])
        self.emit(
            Event(
                "response",
                call.endpoint,
                call.login_id,
                call.request_id,
                attempt,
                status=status,
                elapsed=elapsed,
            )
        )
        if status == 200:
            value = None
            if call.decode is not None:
                try:
                    value = call.decode(body)
                except DecodeError as exc:
                    exc.http_status, exc.content_type = status, content_type
                    raise _Retryable(exc) from None
            return Reply(status, body, value)
        if status == 202:
            return Reply(status, body)
        raise self._error(call, status, content_type, retry_after, body)

    async def _exchange(
        self, session: aiohttp.ClientSession, call: Call
    ) -> tuple[int, str, float | None, bytes]:
        """One HTTP exchange; the response is always released, also when cancelled."""
        s = self.settings
        async with session.request(
            call.method,
            call.url,
            data=call.body,
            headers=call.headers,
            allow_redirects=False,
            proxy=s.proxy,
        ) as resp:
            try:
                limit = s.max_response_bytes
                length = resp.content_length
                if length is not None and length > limit:
                    raise self._too_large(call, limit)
                if length is not None and "Content-Encoding" not in resp.headers:
                    body = await resp.read()
                else:
                    chunks: list[bytes] = []
                    size = 0
                    while chunk := await resp.content.readany():
                        size += len(chunk)
                        if size > limit:
                            raise self._too_large(call, limit)
                        chunks.append(chunk)
                    body = b"".join(chunks)
            except BaseException:
                resp.close()  # drop the connection: a half-read body can't be reused
                raise
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.headers.get("Location", "")
                host = URL(location).host if location else None
                raise APIError(
                    f"unexpected redirect to {host or 'an unknown host'}; not followed",
                    http_status=resp.status,
                    login_id=call.login_id,
                    request_id=call.request_id,
                    endpoint=call.endpoint,
                )
            return resp.status, resp.headers.get("Content-Type", ""), retry_after, body

    def _too_large(self, call: Call, limit: int) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"response body over max_response_bytes={limit}",
            login_id=call.login_id,
            request_id=call.request_id,
            endpoint=call.endpoint,
        )

    def _error(
        self, call: Call, status: int, content_type: str, retry_after: float | None, body: bytes
    ) -> Exception:
        code: str | None = None
        message = ""
        request_id = call.request_id
        try:
            env = _ERROR_DECODER.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            kind = content_type.split(";")[0] or "no content type"
            message = f"HTTP {status} with a non-JSON body ({kind}, {len(body)} bytes)"
        else:
            code = env.flinks_code.strip().upper() if env.flinks_code else None
            message = (env.message or "")[:500] or f"HTTP {status}"
            request_id = env.request_id or request_id
        cls = api_error_for(code, status)
        error = cls(
            message,
            flinks_code=code,
            http_status=status,
            login_id=call.login_id,
            request_id=request_id,
            endpoint=call.endpoint,
        )
        if isinstance(error, RateLimitError):
            error.retry_after = retry_after
        if isinstance(error, TransientAPIError):
            return _Retryable(error, retry_after)
        return error  # SessionExpiredError (the poller re-authorizes) or a fatal error

    def _extra(self, call: Call, **fields: object) -> dict[str, object]:
        login = call.login_id if not self.settings.redact_login_ids else short_id(call.login_id)
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
        status: int | None,
        error: FlinksError | None,
    ) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        elapsed = time.monotonic() - started
        extra = self._extra(call, attempt=attempt, status=status, elapsed=elapsed)
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
