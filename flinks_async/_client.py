"""`FlinksClient`: the public entry point."""

from __future__ import annotations

import copy
import dataclasses
import functools
import ssl as _ssl
import time
from collections.abc import (
    AsyncIterable,
    Callable,
    Coroutine,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Literal, Self, TypedDict, Unpack, overload

import anyio
import msgspec

from . import _coordination, _otel
from ._bulk import Result, check_many_options, many
from ._config import Settings
from ._errors import ConfigurationError, DecodeError, InvalidLoginIdError, PollTimeoutError
from ._events import Event, EventHook, dispatch, scoped_hooks
from ._models import (
    AccountsDetail,
    AccountsSummary,
    Authorization,
    Investments,
    Statements,
    decoder_for,
)
from ._polling import ENDPOINTS, Endpoint, Progress, fetch, make_decoder
from ._redact import is_guid
from ._schema import SchemaCheck
from ._singleflight import SingleFlight
from ._transport import Call, Transport
from ._version import __version__

_USER_AGENT = f"flinks-async/{__version__}"

__all__ = ["FlinksClient"]

_PARAM_NAMES = {
    "with_account_identity": "WithAccountIdentity",
    "with_kyc": "WithKYC",
    "with_transactions": "WithTransactions",
    "with_balance": "WithBalance",
    "days_of_transactions": "DaysOfTransactions",
    "accounts_filter": "AccountsFilter",
    "date_from": "DateFrom",
    "date_to": "DateTo",
    "most_recent_cached": "MostRecentCached",
    "number_of_statements": "NumberOfStatements",
}


_AUTHORIZATION = make_decoder(Authorization, raw=False)


class _Token(msgspec.Struct, rename="pascal"):
    token: str | None = None


def _token_of(body: bytes) -> str:
    """The ``Token`` of a ``/GenerateAuthorizeToken`` answer, or :class:`DecodeError`."""
    try:
        token = decoder_for(_Token).decode(body).token
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        token = None
    if not token:
        raise DecodeError("GenerateAuthorizeToken answered without a Token")
    return token


#: What ``/GetAccountsDetail`` accepts as ``DaysOfTransactions``.
DaysOfTransactions = Literal["Days90", "Days365"]
_DAYS = ("Days90", "Days365")


def check_login_id(login_id: object) -> str:
    """Return ``login_id`` (surrounding white space stripped, as the CLI does) if it is a
    GUID string, else raise :class:`InvalidLoginIdError`."""
    if isinstance(login_id, str):
        login_id = login_id.strip()
    if not is_guid(login_id):
        shown = (
            f"a {type(login_id).__name__} of {len(login_id)} characters"
            if isinstance(login_id, str)
            else f"a {type(login_id).__name__}"
        )
        raise InvalidLoginIdError(
            f"a Flinks loginId is a GUID like 5e115eac-1209-4f19-641c-08d6d484e2fe, got {shown}",
            login_id=login_id if isinstance(login_id, str) else None,
        )
    assert isinstance(login_id, str)
    return login_id


class FlinksClient:
    """An asyncio client for one Flinks customer.

    Use it as ``async with FlinksClient(...) as client:`` (or call :meth:`aclose`), and keep
    one for the life of your app: it holds the connection pool, the single-flight table
    and the rate limiter. The HTTP session is created on first use, inside the running loop.

    Args:
        customer_id: your Flinks customer GUID (else ``FLINKS_CUSTOMER_ID``). Required.
        base_url: the instance, default the toolbox sandbox
            ``https://toolbox-api.private.fin.ag`` (else ``FLINKS_BASE_URL``).
        api_key: sent as ``x-api-key`` to the data endpoints (else ``FLINKS_API_KEY``).
        secret_key: when set (else ``FLINKS_SECRET_KEY``), every Authorize first mints a
            single-use token at ``/GenerateAuthorizeToken`` and sends it as ``flinks-auth-key``.
        investments_url: full URL of ``/Investments``; default
            ``{base_url}/v3/{customer_id}/BankingServices/Investments`` (the integration
            guide). For the wealth host: ``https://{instance}-wealth-api.private.fin.ag/v3/{customer_id}/Investments``.
        poll_interval: seconds between polls of a 202 answer (10.0), jittered by
            ``poll_jitter`` (0.1, i.e. +-10%).
        poll_timeout: seconds one data call may take in all, Authorize and polls included
            (1800.0); then :class:`PollTimeoutError`.
        max_retries: retries of one HTTP request on a transient failure (3). The backoff is
            ``min(backoff_max, backoff_initial * 2**(n-1)) * uniform(0.5, 1)`` for retry n
            (``backoff_initial`` 1.0, ``backoff_max`` 30.0), raised to ``Retry-After`` capped
            at ``max_retry_after`` (120.0).
        max_connections: connection-pool size (100).
        rate_limit: at most this many requests *arrive at Flinks* in any window of
            ``rate_limit_window`` seconds (1.0), across the client, retries, polls and token
            requests included (default: no limit). Held whatever the latency: a request
            holds its slot from being sent until ``rate_limit_window`` after its answer
            began (see :mod:`flinks_async._ratelimit`). A whole number; below 1, one
            request every ``rate_limit_window / rate_limit`` seconds.
        connect_timeout: seconds to open a connection (10).
        request_timeout: seconds one whole HTTP exchange may take (300: a sync Flinks call
            may legitimately hold the connection ~210 s before its 202). It also ends a
            server that sends headers and then goes silent, or trickles a body.
        read_timeout: seconds of silence between received bytes before giving up (default
            ``None``: off, ``request_timeout`` bounds it). Set it to catch a stalled
            connection sooner; it costs ~25 µs CPU per request (aiohttp re-arms a timer on
            every chunk), which is why it is off by default.
        max_response_bytes: bodies above this raise :class:`ResponseTooLargeError` (64 MiB:
            twice the largest real answer we know of, a 28 MB ``/GetAccountsDetail``).
        max_body_bytes_in_flight: the most bytes of response bodies the client holds at
            once, read or being decoded, across all its calls (256 MiB); a body that does not
            fit waits for others to be decoded, so a fan-out's memory is bounded whatever the
            answers weigh (:mod:`flinks_async._budget`). At least ``max_response_bytes``.
        ssl: ``True`` verifies TLS with the system CAs (default); an ``ssl.SSLContext`` for a
            custom CA or client certificate. ``False`` disables verification (never in
            production).
        proxy: an HTTP proxy URL; ``trust_env=True`` reads ``HTTPS_PROXY`` etc. instead.
        redact_login_ids: show login ids shortened in logs (True).
        log_bodies: log response bodies at DEBUG (False: they hold personal data).
        event_hooks: callables receiving every :class:`Event` (see :mod:`flinks_async._events`).
        tracing: OpenTelemetry spans for every data call and HTTP attempt (needs
            ``opentelemetry-api``: the ``otel`` extra). Off by default.
        unreachable_after: a circuit breaker, off by default (``None``). When that many
            connection attempts in a row fail (refused, unknown host, connect timeout)
            before the server has ever answered, every call fails at once with
            :class:`ServerUnreachableError` instead of retrying (a wrong ``base_url``
            would otherwise churn through retries for every login). ``flinks-async pull``
            uses 20. Leave it off for long-lived apps that must survive Flinks being
            down at start-up.
        stop_on_setup_error: the set-up breaker, on by default. When an endpoint that has
            never answered this client with a 2xx answers 401/403 (``UNAUTHORIZED`` or no
            FlinksCode) or 404 without a FlinksCode for 3 different logins (or once for
            ``/GenerateAuthorizeToken``), the key, customer id or base URL is wrong, not
            the logins: that call and every later one raise :class:`SetupError` without
            sending anything, and a fan-out stops, instead of sending one doomed request per
            login. An endpoint that has answered a 2xx is never judged this way.
        strict_schema: raise :class:`SchemaDriftError` for an answer holding a key or a
            value type the models do not map, instead of logging it (for integrators' CI).
            Checks every answer. Off by default: drift is then logged once per key and
            counted in :attr:`schema_drift`, from the first 20 answers (up to 2 MB) of each
            model.
        keep_extra: keep what the models do not map on each model's ``.extra`` (a dict),
            checking every answer; :func:`flinks_async.dump` re-encodes a value with it.
            Off by default: it reads every answer a second time (see Performance).
        redis_url: share ``rate_limit`` and single-flight with every client using this
            Redis and customer id, in any process (``redis://``, ``rediss://`` for TLS, user
            and password in the URL; also read from ``FLINKS_REDIS_URL``; needs the
            ``redis`` extra). Unset: each client counts its own requests and shares polls
            only between its own callers. See :mod:`flinks_async._coordination`.
        redis_fallback: ``"error"`` (default): Redis unavailable raises
            :class:`CoordinationError` from the call that needed it; ``"local"``: log one
            warning and go on with this process's **share** of ``rate_limit`` (the limit
            divided by the processes whose heartbeat it last saw in Redis) and its own
            single-flight, asking Redis again every second; once it answers, log one
            warning and share again.
        redis_rate_limit: with ``redis_url``, share ``rate_limit`` through Redis (True).
        redis_single_flight: with ``redis_url``, share single-flight through Redis (True):
            each answer (up to 4 MiB) is then kept there for 15 s for the other processes'
            callers. ``False`` for a process that only wants the shared rate limit.
        coordination_timeout: seconds any one Redis operation may take (default 2).
    """

    def __init__(
        self,
        customer_id: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        secret_key: str | None = None,
        poll_interval: float = 10.0,
        poll_timeout: float = 1800.0,
        max_retries: int = 3,
        max_connections: int = 100,
        rate_limit: float | None = None,
        rate_limit_window: float = 1.0,
        investments_url: str | None = None,
        poll_jitter: float = 0.1,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        connect_timeout: float = 10.0,
        read_timeout: float | None = None,
        request_timeout: float = 300.0,
        max_response_bytes: int = 64 * 1024 * 1024,
        max_body_bytes_in_flight: int = 256 * 1024 * 1024,
        ssl: _ssl.SSLContext | bool = True,
        proxy: str | None = None,
        trust_env: bool = False,
        redact_login_ids: bool = True,
        log_bodies: bool = False,
        event_hooks: Iterable[EventHook] = (),
        tracing: bool = False,
        unreachable_after: int | None = None,
        stop_on_setup_error: bool = True,
        strict_schema: bool = False,
        keep_extra: bool = False,
        redis_url: str | None = None,
        redis_fallback: Literal["error", "local"] = "error",
        redis_rate_limit: bool = True,
        redis_single_flight: bool = True,
        coordination_timeout: float = 2.0,
    ) -> None:
        self.settings = Settings.build(
            customer_id=customer_id,
            base_url=base_url,
            api_key=api_key,
            secret_key=secret_key,
            poll_interval=poll_interval,
            poll_timeout=poll_timeout,
            max_retries=max_retries,
            max_connections=max_connections,
            rate_limit=rate_limit,
            rate_limit_window=rate_limit_window,
            investments_url=investments_url,
            poll_jitter=poll_jitter,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            max_retry_after=max_retry_after,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            request_timeout=request_timeout,
            max_response_bytes=max_response_bytes,
            max_body_bytes_in_flight=max_body_bytes_in_flight,
            ssl=ssl,
            proxy=proxy,
            trust_env=trust_env,
            redact_login_ids=redact_login_ids,
            log_bodies=log_bodies,
            unreachable_after=unreachable_after,
            stop_on_setup_error=stop_on_setup_error,
            strict_schema=strict_schema,
            keep_extra=keep_extra,
            redis_url=redis_url,
            redis_fallback=redis_fallback,
            redis_rate_limit=redis_rate_limit,
            redis_single_flight=redis_single_flight,
            coordination_timeout=coordination_timeout,
        )
        s = self.settings
        self._tracer = _otel.get_tracer() if tracing else None
        # the client chooses the rate limiter and the shared flights; the transport and
        # the data calls are handed them (flinks_async._coordination)
        self._coordination = _coordination.build(s)
        share_limit, share_flights = _coordination.shared_parts(s)
        if share_limit or share_flights:
            from . import _redis  # only with redis_url: import flinks_async never needs it

            _redis.attach(
                self._coordination, s, share_limit=share_limit, share_flights=share_flights
            )
        self._transport = Transport(s, tuple(event_hooks), self._tracer, self._coordination.limiter)
        self._schema = SchemaCheck(
            strict=s.strict_schema, keep_extra=s.keep_extra, hooks=tuple(event_hooks)
        )
        self._flights = SingleFlight()
        self._shared = self._coordination.flights  # across processes, with redis_url
        # The fixed headers are the session's defaults; a call carries only its own
        # (the API key), so aiohttp merges one entry per request, or none.
        self._transport.default_headers = {
            "User-Agent": _USER_AGENT,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self._data_headers = {"x-api-key": s.api_key} if s.api_key else {}
        self._auth_headers: dict[str, str] = {}
        self._call_options = tuple(getattr(s, name) for name in CallOptions.__annotations__)
        #: each endpoint's URL, worked out once (views share them: options leave URLs be)
        self._urls = {
            spec.key: s.investments_endpoint_url
            if spec.key == "investments"
            else f"{s.banking_url}/{spec.name}"
            for spec in ENDPOINTS.values()
        }
        self._authorize_url = f"{s.banking_url}/Authorize"

    def with_options(self, **options: Unpack[CallOptions]) -> Self:
        """A view of this client with other per-call options (``poll_timeout``,
        ``poll_interval``, ``poll_jitter``, ``max_retries``, ``backoff_initial``,
        ``backoff_max``, ``max_retry_after``), as the openai / anthropic clients do::

            web = client.with_options(poll_timeout=25, max_retries=1)
            inv = await web.investments(login_id)  # PollTimeoutError after 25 s

        The view shares the client's connection pool, single-flight table, rate limiter
        and circuit breaker: it is cheap (make one per request if you like) and is not a
        client of its own. Closing it closes the client. Calls through views with
        different options never share a poll, so a 25 s handler never waits on (or cuts
        short) a 30-minute nightly run for the same login. Raises
        :class:`ConfigurationError` for an unknown option or a bad value.
        """
        unknown = sorted(set(options) - set(CallOptions.__annotations__))
        if unknown:
            raise ConfigurationError(
                f"with_options takes {', '.join(CallOptions.__annotations__)}; "
                f"not {', '.join(map(repr, unknown))}"
            )
        try:
            settings = dataclasses.replace(self.settings, **options)
        except TypeError as exc:
            raise ConfigurationError(str(exc)) from None
        settings._validate()
        view = copy.copy(self)
        view.settings = settings
        view._call_options = tuple(getattr(settings, n) for n in CallOptions.__annotations__)
        return view

    def __repr__(self) -> str:
        state = "closed" if self._transport.closed else "open"
        return f"<FlinksClient {self.settings.describe()} {state}>"

    async def __aenter__(self) -> Self:
        self._transport.session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel shared polls in progress and close every connection. Idempotent."""
        await self._flights.aclose()
        await self._transport.aclose()
        with anyio.CancelScope(shield=True):
            await self._coordination.aclose()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` has been called (calls then raise
        :class:`ClientClosedError`)."""
        return self._transport.closed

    @property
    def schema_drift(self) -> dict[str, dict[str, int]]:
        """What the answers held that the models do not map, and how often:
        ``{"Position": {"'NewField'": 3, "'Quantity' (str)": 1}}`` (keys, never values;
        see :mod:`flinks_async._schema`). Empty when nothing drifted."""
        return self._schema.summary()

    @property
    def in_flight_requests(self) -> int:
        """HTTP requests currently holding a connection (0 when the client is idle)."""
        return self._transport.in_flight

    @property
    def active_polls(self) -> int:
        """Shared Authorize + poll chains in progress (single-flight entries)."""
        return len(self._flights)

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent since the client was created (retries and polls included)."""
        return self._transport.requests_sent

    # --- Authorize -------------------------------------------------------------------

    async def authorize(self, login_id: str) -> Authorization:
        """Exchange a loginId for a session (``POST /Authorize``, cached mode).

        Returns the :class:`Authorization`, whose ``request_id`` can be passed to the data
        methods to reuse the session.
        """
        return await self._authorize(check_login_id(login_id))

    async def answer_mfa(
        self,
        login_id: str,
        request_id: str,
        responses: Mapping[str, str | Sequence[str]],
    ) -> Authorization:
        """Answer the MFA questions of a ``203`` (:class:`MFARequiredError`) and open the
        session: ``POST /Authorize`` again with the same ``RequestId`` and
        ``SecurityResponses`` (``{prompt: [answers]}``; a single string is one answer).

        Returns the :class:`Authorization`; continue the data call with its
        ``request_id`` (``await client.investments(login_id, request_id=auth.request_id)``).
        Raises :class:`MFARequiredError` again when the institution asks a follow-up
        question (same ``request_id``, new ``challenges``), and :class:`MFAError` for a
        wrong answer (``INVALID_SECURITY_RESPONSE``), a prompt that was not asked
        (``UNKNOWN_CHALLENGE_KEY``) or one left out (``SECURITYRESPONSES_INCOMPLETE``).
        The answers are sent once, never retried, and never logged.
        """
        check_login_id(login_id)
        if not request_id:
            raise ValueError("answer_mfa needs the RequestId of the MFARequiredError")
        answers = {
            str(prompt): [value] if isinstance(value, str) else [str(v) for v in value]
            for prompt, value in responses.items()
        }
        return await self._authorize(
            login_id, {"RequestId": request_id, "SecurityResponses": answers}
        )

    async def _authorize(
        self, login_id: str, mfa: dict[str, object] | None = None
    ) -> Authorization:
        s = self.settings
        body: dict[str, object] = {"LoginId": login_id, "MostRecentCached": True}
        call = Call(
            "POST",
            self._authorize_url,
            "Authorize",
            self._auth_headers,
            msgspec.json.encode(body if mfa is None else {**body, **mfa}),
            login_id,
            None,
            _AUTHORIZATION,
            self._authorize_token if s.secret_key else None,
            s if mfa is None else dataclasses.replace(s, max_retries=0),  # answers: once
        )
        reply = await self._transport.send(call)
        if reply.status != 200 or not reply.value.request_id:
            raise DecodeError(
                f"Authorize answered HTTP {reply.status} without a RequestId",
                http_status=reply.status,
                login_id=login_id,
                endpoint="Authorize",
            )
        auth: Authorization = reply.value
        auth.login_id = login_id
        return auth

    async def _authorize_token(self) -> dict[str, str]:
        """A fresh single-use authorize token, as the ``flinks-auth-key`` header."""
        s = self.settings
        assert s.secret_key is not None

        call = Call(
            "POST",
            f"{s.banking_url}/GenerateAuthorizeToken",
            "GenerateAuthorizeToken",
            {**self._auth_headers, "flinks-auth-key": s.secret_key},
            None,
            None,
            None,
            _token_of,
            settings=s,
        )
        reply = await self._transport.send(call)
        return {"flinks-auth-key": reply.value}

    # --- data endpoints ----------------------------------------------------------------

    async def fetch(
        self,
        endpoint: str,
        login_id: str,
        *,
        request_id: str | None = None,
        raw: bool = False,
        poll_timeout: float | None = None,
        **params: Any,
    ) -> Any:
        """Authorize (unless ``request_id``), call ``endpoint`` and poll until its 200.

        ``endpoint`` is ``"investments"``, ``"accounts-detail"``, ``"accounts-summary"`` or
        ``"statements"``; ``params`` are that method's keyword options. Concurrent calls for
        the same login, endpoint and options share one Authorize and one polling chain.
        Prefer the typed methods (:meth:`investments`, ...); this one serves :meth:`many`.
        ``poll_timeout`` overrides the client's for this call (see :meth:`with_options`).
        """
        return await self._call(endpoint, login_id, request_id, raw, poll_timeout, params)

    def _call(
        self,
        endpoint: str,
        login_id: str,
        request_id: str | None,
        raw: bool,
        poll_timeout: float | None,
        params: dict[str, Any],
    ) -> Coroutine[Any, Any, Any]:
        """The coroutine of one data call, for the public methods to await. When nothing
        listens (no hooks, no tracing) it is the single-flight run itself: no frame of
        ours between the caller and the run (every await of a request resumes through
        each frame above it). Bad arguments raise here, before any request."""
        if poll_timeout is not None:
            view = self.with_options(poll_timeout=poll_timeout)
            return view._call(endpoint, login_id, request_id, raw, None, params)
        if self._tracer is None and not self._transport.hooks and not scoped_hooks.get():
            key, work = self._prepare(endpoint, login_id, request_id, raw, params)
            return self._flights.run(key, work)
        return self._observed(endpoint, login_id, request_id, raw, params)

    def _call_one(
        self, endpoint: str, raw: bool, params: dict[str, Any], login_id: str
    ) -> Coroutine[Any, Any, Any]:
        """:meth:`_call` for one login of :meth:`many`."""
        return self._call(endpoint, login_id, None, raw, None, params)

    async def _observed(
        self,
        endpoint: str,
        login_id: str,
        request_id: str | None,
        raw: bool,
        params: dict[str, Any],
    ) -> Any:
        """A data call with hooks or tracing on: its ``started``/``done`` events and span."""
        hooks = self._transport.hooks or scoped_hooks.get()
        tracer = self._tracer
        spec = ENDPOINTS.get(endpoint)
        name = spec.name if spec is not None else endpoint
        if hooks:
            dispatch(self._transport.hooks, Event("started", name, login_id))
        started = time.monotonic()
        span = None
        if tracer is not None:
            span = tracer.start_span(f"flinks {name}", attributes=self._span_attrs(name, login_id))
        try:
            key, work = self._prepare(endpoint, login_id, request_id, raw, params)
            if span is not None:
                with _otel.use_span(span):
                    result = await self._flights.run(key, work)
            else:
                result = await self._flights.run(key, work)
        except BaseException as exc:
            if span is not None:
                _otel.error_status(span, exc)
            if hooks and isinstance(exc, Exception):
                dispatch(
                    self._transport.hooks,
                    Event("done", name, login_id, elapsed=time.monotonic() - started, error=exc),
                )
            raise
        finally:
            if span is not None:
                span.end()
        if hooks:
            dispatch(
                self._transport.hooks,
                Event("done", name, login_id, elapsed=time.monotonic() - started),
            )
        return result

    def _span_attrs(self, endpoint: str, login_id: object) -> dict[str, str]:
        return {
            "flinks.endpoint": endpoint,
            "flinks.login_id": self.settings.shown_login_id(login_id),
        }

    def _prepare(
        self,
        endpoint: str,
        login_id: str,
        request_id: str | None,
        raw: bool,
        params: dict[str, Any],
    ) -> tuple[Hashable, Callable[[], Coroutine[Any, Any, Any]]]:
        """The single-flight key of a data call and the work it runs (not a coroutine of
        its own: every await of a request resumes through each frame above it)."""
        spec = _endpoint(endpoint)
        login_id = check_login_id(login_id)
        if params:
            body = _wire_params(spec, params)
            options = msgspec.json.encode(body)
        else:  # the common case
            body, options = {}, b"{}"
        key = (
            spec.key,
            login_id.lower(),
            request_id,
            raw,
            options,
            self._call_options,  # a 25 s view never joins a 30 min run
        )
        shared = self._shared is not None  # one run among every process on this Redis
        # a partial, not a closure: a login in flight holds 3 objects the cyclic GC walks
        # here instead of a function and a dozen cells (full collections walk them all);
        # positional: it is built and called for every call
        progress = Progress()  # shared by this run and, if handed over, its continuation
        work = functools.partial(
            fetch,
            self._transport,
            spec,
            self._urls[spec.key],
            login_id,
            request_id,
            body,
            raw or shared,  # shared runs hand bytes over; each caller decodes them
            self._authorize,
            self._data_headers,
            self.settings,
            self._schema,
            progress,
        )
        if not shared:
            return key, work
        shared_key = (key[0], key[1], key[2], key[4], key[5])  # raw or not: same bytes
        decode = (
            None
            if raw
            else self._schema.wrap(
                make_decoder(spec.model, raw=False), spec.model, spec.name, login_id
            )
        )
        return key, functools.partial(
            self._shared_fetch, shared_key, work, decode, login_id, spec.name, progress
        )

    async def _shared_fetch(
        self,
        key: Hashable,
        raw_work: Callable[[], Coroutine[Any, Any, bytes]],
        decode: Callable[[bytes], Any] | None,
        login_id: str,
        endpoint: str,
        progress: Progress,
    ) -> Any:
        """A data call run once among every process on this Redis, then decoded here.

        The deadline is this caller's own: ``poll_timeout`` from now, whether it waits on
        another process's run or runs it (a run taken over starts with what is left)."""
        assert self._shared is not None
        started = progress.started = time.monotonic()
        timeout = self.settings.poll_timeout
        try:
            body = await self._shared.run(
                key, raw_work, login_id=login_id, deadline=started + timeout
            )
        except _coordination.FlightDeadline:
            elapsed = time.monotonic() - started
            raise PollTimeoutError(
                f"still pending after {elapsed:.1f}s, waiting on another process's run "
                f"(poll_timeout={timeout}s)",
                attempts=0,
                elapsed=elapsed,
                login_id=login_id,
                endpoint=endpoint,
            ) from None
        if decode is None:
            return body
        try:
            return decode(body)
        except DecodeError as exc:
            exc.login_id, exc.endpoint, exc.http_status = login_id, endpoint, 200
            raise

    @overload
    async def investments(
        self,
        login_id: str,
        *,
        request_id: str | None = ...,
        raw: Literal[False] = ...,
        poll_timeout: float | None = ...,
    ) -> Investments: ...
    @overload
    async def investments(
        self,
        login_id: str,
        *,
        request_id: str | None = ...,
        raw: Literal[True],
        poll_timeout: float | None = ...,
    ) -> bytes: ...
    async def investments(
        self,
        login_id: str,
        *,
        request_id: str | None = None,
        raw: bool = False,
        poll_timeout: float | None = None,
    ) -> Investments | bytes:
        """The login's investment accounts, positions and transactions (``POST /Investments``,
        polled by re-POSTing). ``raw=True`` returns the 200 body's bytes, checked to be a JSON
        object, for archiving."""
        result: Investments | bytes = await self._call(
            "investments", login_id, request_id, raw, poll_timeout, {}
        )
        return result

    @overload
    async def accounts_detail(
        self,
        login_id: str,
        *,
        request_id: str | None = ...,
        raw: Literal[False] = ...,
        poll_timeout: float | None = ...,
        days_of_transactions: DaysOfTransactions | None = ...,
        with_transactions: bool | None = ...,
        with_balance: bool | None = ...,
        with_account_identity: bool | None = ...,
        with_kyc: bool | None = ...,
        accounts_filter: list[str] | None = ...,
        date_from: str | None = ...,
        date_to: str | None = ...,
        most_recent_cached: bool | None = ...,
    ) -> AccountsDetail: ...
    @overload
    async def accounts_detail(
        self,
        login_id: str,
        *,
        request_id: str | None = ...,
        raw: Literal[True],
        poll_timeout: float | None = ...,
        days_of_transactions: DaysOfTransactions | None = ...,
        with_transactions: bool | None = ...,
        with_balance: bool | None = ...,
        with_account_identity: bool | None = ...,
        with_kyc: bool | None = ...,
        accounts_filter: list[str] | None = ...,
        date_from: str | None = ...,
        date_to: str | None = ...,
        most_recent_cached: bool | None = ...,
    ) -> bytes: ...
    async def accounts_detail(
        self,
        login_id: str,
        *,
        request_id: str | None = None,
        raw: bool = False,
        poll_timeout: float | None = None,
        days_of_transactions: DaysOfTransactions | None = None,
        with_transactions: bool | None = None,
        with_balance: bool | None = None,
        with_account_identity: bool | None = None,
        with_kyc: bool | None = None,
        accounts_filter: list[str] | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        most_recent_cached: bool | None = None,
    ) -> AccountsDetail | bytes:
        """Accounts with holder, balance and transactions (``POST /GetAccountsDetail``, polled
        with ``GET /GetAccountsDetailAsync/{requestId}``). ``days_of_transactions`` is
        ``"Days90"`` or ``"Days365"``; options left ``None`` are not sent."""
        result: AccountsDetail | bytes = await self._call(
            "accounts-detail",
            login_id,
            request_id,
            raw,
            poll_timeout,
            {
                "days_of_transactions": days_of_transactions,
                "with_transactions": with_transactions,
                "with_balance": with_balance,
                "with_account_identity": with_account_identity,
                "with_kyc": with_kyc,
                "accounts_filter": accounts_filter,
                "date_from": date_from,
                "date_to": date_to,
                "most_recent_cached": most_recent_cached,
            },
        )
        return result

    @overload
    async def accounts_summary(
        self,
        login_id: str,
        *,
        request_id: str | None = ...,
        raw: Literal[False] = ...,
        poll_timeout: float | None = ...,
        with_balance: bool | None = ...,
        with_account_identity: bool | None = ...,
    ) -> AccountsSummary: ...
    @overload
    async def accounts_summary(
        self,
        login_id: str,
        *,
        request_id: str | None = ...,
        raw: Literal[True],
        poll_timeout: float | None = ...,
        with_balance: bool | None = ...,
        with_account_identity: bool | None = ...,
    ) -> bytes: ...
    async def accounts_summary(
        self,
        login_id: str,
        *,
        request_id: str | None = None,
        raw: bool = False,
        poll_timeout: float | None = None,
        with_balance: bool | None = None,
        with_account_identity: bool | None = None,
    ) -> AccountsSummary | bytes:
        """Accounts without transactions (``POST /GetAccountsSummary``, polled with
        ``GET /GetAccountsSummaryAsync/{requestId}``)."""
        result: AccountsSummary | bytes = await self._call(
            "accounts-summary",
            login_id,
            request_id,
            raw,
            poll_timeout,
            {
                "with_balance": with_balance,
                "with_account_identity": with_account_identity,
            },
        )
        return result

    @overload
    async def statements(
        self,
        login_id: str,
        *,
        request_id: str | None = ...,
        raw: Literal[False] = ...,
        poll_timeout: float | None = ...,
        number_of_statements: str | None = ...,
        accounts_filter: list[str] | None = ...,
    ) -> Statements: ...
    @overload
    async def statements(
        self,
        login_id: str,
        *,
        request_id: str | None = ...,
        raw: Literal[True],
        poll_timeout: float | None = ...,
        number_of_statements: str | None = ...,
        accounts_filter: list[str] | None = ...,
    ) -> bytes: ...
    async def statements(
        self,
        login_id: str,
        *,
        request_id: str | None = None,
        raw: bool = False,
        poll_timeout: float | None = None,
        number_of_statements: str | None = None,
        accounts_filter: list[str] | None = None,
    ) -> Statements | bytes:
        """PDF statements, base64 (``POST /GetStatements``, polled with
        ``GET /GetStatementsAsync/{requestId}``). ``number_of_statements``: ``"MostRecent"``,
        ``"Months3"`` or ``"Months12"``."""
        result: Statements | bytes = await self._call(
            "statements",
            login_id,
            request_id,
            raw,
            poll_timeout,
            {
                "number_of_statements": number_of_statements,
                "accounts_filter": accounts_filter,
            },
        )
        return result

    async def delete_card(self, login_id: str) -> None:
        """Delete the login and its data at Flinks (``DELETE /DeleteCard/{loginId}``)."""
        login_id = check_login_id(login_id)
        s = self.settings
        call = Call(
            "DELETE",
            f"{s.banking_url}/DeleteCard/{login_id}",
            "DeleteCard",
            self._data_headers,
            None,
            login_id,
            settings=s,
        )
        await self._transport.send(call)

    # --- fan-out -----------------------------------------------------------------------

    def many(
        self,
        endpoint: str,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int = 50,
        fail_fast: bool = False,
        dedupe: bool | Literal["in-flight"] = True,
        on_event: EventHook | None = None,
        raw: bool = False,
        **params: Any,
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[Any]]]:
        """Pull ``endpoint`` for every login id; results in completion order.

        ``endpoint`` is ``"investments"``, ``"accounts-detail"``, ``"accounts-summary"`` or
        ``"statements"``; ``params`` are that endpoint method's options. The rules (one task
        per login in flight, back-pressure, exactly one result per distinct login,
        cancellation on leaving the block) are in :mod:`flinks_async._bulk`.
        """
        spec = _endpoint(endpoint)
        name = spec.name
        _wire_params(spec, params)  # a bad option fails here, before any login starts
        check_many_options(concurrency, dedupe)

        # the call's own coroutine, not one wrapping it: no frame of ours for every await
        one = functools.partial(self._call_one, endpoint, raw, params)
        return many(
            one,
            login_ids,
            concurrency=concurrency,
            fail_fast=fail_fast,
            dedupe=dedupe,
            on_event=on_event,
            endpoint=name,
        )

    @overload
    def investments_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: Literal[False] = ...,
        **options: Unpack[ManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[Investments]]]: ...
    @overload
    def investments_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: Literal[True],
        **options: Unpack[ManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[bytes]]]: ...
    @overload
    def investments_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: bool,
        **options: Unpack[ManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[Any]]]: ...
    def investments_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: bool = False,
        **options: Unpack[ManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[Any]]]:
        """:meth:`many` for ``/Investments``: ``Result[Investments]``, or ``Result[bytes]`` with
        ``raw=True``."""
        return self.many("investments", login_ids, raw=raw, **options)

    @overload
    def accounts_detail_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: Literal[False] = ...,
        **options: Unpack[AccountsDetailManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[AccountsDetail]]]: ...
    @overload
    def accounts_detail_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: Literal[True],
        **options: Unpack[AccountsDetailManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[bytes]]]: ...
    @overload
    def accounts_detail_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: bool,
        **options: Unpack[AccountsDetailManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[Any]]]: ...
    def accounts_detail_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: bool = False,
        **options: Unpack[AccountsDetailManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[Any]]]:
        """:meth:`many` for ``/GetAccountsDetail`` (options as :meth:`accounts_detail`):
        ``Result[AccountsDetail]``, or ``Result[bytes]`` with ``raw=True``."""
        return self.many("accounts-detail", login_ids, raw=raw, **options)

    @overload
    def accounts_summary_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: Literal[False] = ...,
        **options: Unpack[AccountsSummaryManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[AccountsSummary]]]: ...
    @overload
    def accounts_summary_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: Literal[True],
        **options: Unpack[AccountsSummaryManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[bytes]]]: ...
    @overload
    def accounts_summary_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: bool,
        **options: Unpack[AccountsSummaryManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[Any]]]: ...
    def accounts_summary_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: bool = False,
        **options: Unpack[AccountsSummaryManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[Any]]]:
        """:meth:`many` for ``/GetAccountsSummary`` (options as :meth:`accounts_summary`):
        ``Result[AccountsSummary]``, or ``Result[bytes]`` with ``raw=True``."""
        return self.many("accounts-summary", login_ids, raw=raw, **options)

    @overload
    def statements_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: Literal[False] = ...,
        **options: Unpack[StatementsManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[Statements]]]: ...
    @overload
    def statements_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: Literal[True],
        **options: Unpack[StatementsManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[bytes]]]: ...
    @overload
    def statements_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: bool,
        **options: Unpack[StatementsManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[Any]]]: ...
    def statements_many(
        self,
        login_ids: Iterable[str] | AsyncIterable[str],
        *,
        raw: bool = False,
        **options: Unpack[StatementsManyOptions],
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[Any]]]:
        """:meth:`many` for ``/GetStatements`` (options as :meth:`statements`):
        ``Result[Statements]``, or ``Result[bytes]`` with ``raw=True``."""
        return self.many("statements", login_ids, raw=raw, **options)


class CallOptions(TypedDict, total=False):
    """The options :meth:`FlinksClient.with_options` can change (see the constructor)."""

    poll_interval: float
    poll_jitter: float
    poll_timeout: float
    max_retries: int
    backoff_initial: float
    backoff_max: float
    max_retry_after: float


class ManyOptions(TypedDict, total=False):
    """The options every fan-out takes (see :meth:`FlinksClient.many`)."""

    concurrency: int
    fail_fast: bool
    dedupe: bool | Literal["in-flight"]
    on_event: EventHook | None


class AccountsDetailManyOptions(ManyOptions, total=False):
    """:class:`ManyOptions` plus those of :meth:`FlinksClient.accounts_detail`."""

    days_of_transactions: DaysOfTransactions | None
    with_transactions: bool | None
    with_balance: bool | None
    with_account_identity: bool | None
    with_kyc: bool | None
    accounts_filter: list[str] | None
    date_from: str | None
    date_to: str | None
    most_recent_cached: bool | None


class AccountsSummaryManyOptions(ManyOptions, total=False):
    """:class:`ManyOptions` plus those of :meth:`FlinksClient.accounts_summary`."""

    with_balance: bool | None
    with_account_identity: bool | None


class StatementsManyOptions(ManyOptions, total=False):
    """:class:`ManyOptions` plus those of :meth:`FlinksClient.statements`."""

    number_of_statements: str | None
    accounts_filter: list[str] | None


def _endpoint(name: str) -> Endpoint:
    try:
        return ENDPOINTS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown endpoint {name!r}; one of {', '.join(sorted(ENDPOINTS))}"
        ) from None


def _wire_params(spec: Endpoint, params: dict[str, Any]) -> dict[str, Any]:
    """The request body fields for ``params``; :class:`ConfigurationError` naming every
    option ``spec`` does not take."""
    unknown = sorted(name for name in params if name not in spec.options)
    if unknown:
        takes = ", ".join(spec.options) or "no options"
        raise ConfigurationError(
            f"{spec.key} does not take {', '.join(map(repr, unknown))} (it takes: {takes})"
        )
    days = params.get("days_of_transactions")
    if days is not None and days not in _DAYS:
        raise ConfigurationError(
            f"days_of_transactions must be one of {', '.join(_DAYS)} (what Flinks accepts), "
            f"got {days!r}"
        )
    return {_PARAM_NAMES[k]: v for k, v in params.items() if v is not None}
