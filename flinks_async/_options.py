"""The options a :class:`~flinks_async.FlinksClient` and its calls take, each stated once.

A ``TypedDict`` per group, so that type checkers check every keyword (``**options:
Unpack[...]``) and the defaults live in one place, :class:`~flinks_async._config.Settings`:

* :class:`ClientOptions`: the constructor's keywords (every :class:`Settings` field but
  ``customer_id``, plus ``event_hooks`` and ``tracing``);
* :class:`CallOptions`: what :meth:`~flinks_async.FlinksClient.with_options` may change;
* :class:`CallArgs`: what every single data call takes (``request_id``, ``poll_timeout``);
* one class per data endpoint with its own request options
  (:class:`AccountsDetailOptions`, ...), which the single call (:class:`AccountsDetailCall`,
  ...) and the fan-out share;
* :class:`ManyOptions`: what every fan-out takes, and one class per endpoint adding that
  endpoint's options (:class:`AccountsDetailMany`, ...).
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import Iterable
from typing import Literal, TypedDict

from ._events import EventHook

__all__ = [
    "AccountsDetailCall",
    "AccountsDetailMany",
    "AccountsDetailOptions",
    "AccountsSummaryCall",
    "AccountsSummaryMany",
    "AccountsSummaryOptions",
    "CallArgs",
    "CallOptions",
    "ClientOptions",
    "DaysOfTransactions",
    "ManyOptions",
    "StatementsCall",
    "StatementsMany",
    "StatementsOptions",
]

#: What ``/GetAccountsDetail`` accepts as ``DaysOfTransactions``.
DaysOfTransactions = Literal["Days90", "Days365"]


class CallOptions(TypedDict, total=False):
    """The options :meth:`FlinksClient.with_options` can change (see :class:`ClientOptions`)."""

    poll_interval: float
    poll_jitter: float
    poll_timeout: float
    max_retries: int
    backoff_initial: float
    backoff_max: float
    max_retry_after: float


class ClientOptions(CallOptions, total=False):
    """The keywords of :class:`FlinksClient` besides ``customer_id``; each defaults as said.

    Args:
        base_url: the instance, default the toolbox sandbox
            ``https://toolbox-api.private.fin.ag`` (else ``FLINKS_BASE_URL``).
        api_key: sent as ``x-api-key`` to the data endpoints (else ``FLINKS_API_KEY``).
        secret_key: when set (else ``FLINKS_SECRET_KEY``), every Authorize first mints a
            single-use token at ``/GenerateAuthorizeToken`` and sends it as ``flinks-auth-key``.
        nightly_refresh_key: the private key of ``GetNightlyRefreshStatus``, sent as
            ``Authorization: Bearer`` to that endpoint only (else
            ``FLINKS_NIGHTLY_REFRESH_KEY``; ask Flinks for it). Never shown.
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
            FlinksCode; from ``/Authorize``, also ``ACCESS_DENIED`` to a token minted for
            that attempt under a minute before) or 404 without a FlinksCode for 3
            different logins, or when ``/GenerateAuthorizeToken`` answers any 401/403 but
            a retryable code (whatever the FlinksCode, even after earlier tokens: it
            carries no login), the key, customer id or base URL is wrong, not the logins:
            that call and every later one raise :class:`SetupError` without sending
            anything, and a fan-out stops, instead of sending one doomed request per
            login. Until a token has been minted, the first token request goes alone
            (the others wait for its answer), so a wrong secret key costs one request.
            Other endpoints that have answered a 2xx are never judged this way.
        strict_schema: raise :class:`SchemaDriftError` for an answer holding a key or a
            value type the models do not map, instead of logging it (for integrators' CI).
            Checks every answer. Off by default: drift is then logged once per key and
            counted in :attr:`FlinksClient.schema_drift`, from the first 20 answers (up to
            2 MB) of each model.
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
        webhooks: let Flinks' webhooks end data calls (False; see docs/webhooks.md). A
            call answered 202 then waits for the webhook carrying its ``RequestId``
            (route :meth:`FlinksClient.webhook_receiver` where Flinks POSTs them) and
            polls only every ``webhook_poll_interval`` seconds (60.0) as a safety net;
            after ``webhook_grace`` seconds (900.0) without its webhook it polls every
            ``poll_interval`` again, still taking a webhook that comes. With
            ``redis_url`` a webhook received by any process wakes the call in any other;
            a data answer's body waits ``webhook_retention`` seconds (900.0) for its call.
            ``webhook_stream=True`` also queues every delivery for
            ``client.webhooks.deliveries()`` (set it in the process that receives).
    """

    base_url: str | None
    api_key: str | None
    secret_key: str | None
    nightly_refresh_key: str | None
    investments_url: str | None
    max_connections: int
    rate_limit: float | None
    rate_limit_window: float
    connect_timeout: float
    read_timeout: float | None
    request_timeout: float
    max_response_bytes: int
    max_body_bytes_in_flight: int
    ssl: _ssl.SSLContext | bool
    proxy: str | None
    trust_env: bool
    redact_login_ids: bool
    log_bodies: bool
    event_hooks: Iterable[EventHook]
    tracing: bool
    unreachable_after: int | None
    stop_on_setup_error: bool
    strict_schema: bool
    keep_extra: bool
    redis_url: str | None
    redis_fallback: Literal["error", "local"]
    redis_rate_limit: bool
    redis_single_flight: bool
    coordination_timeout: float
    webhooks: bool
    webhook_poll_interval: float
    webhook_grace: float
    webhook_retention: float
    webhook_stream: bool


class AccountsDetailOptions(TypedDict, total=False):
    """``/GetAccountsDetail``'s request options; those left ``None`` are not sent.
    ``days_of_transactions`` is ``"Days90"`` or ``"Days365"``."""

    days_of_transactions: DaysOfTransactions | None
    with_transactions: bool | None
    with_balance: bool | None
    with_account_identity: bool | None
    with_kyc: bool | None
    accounts_filter: list[str] | None
    date_from: str | None
    date_to: str | None
    most_recent_cached: bool | None


class AccountsSummaryOptions(TypedDict, total=False):
    """``/GetAccountsSummary``'s request options; those left ``None`` are not sent."""

    with_balance: bool | None
    with_account_identity: bool | None


class StatementsOptions(TypedDict, total=False):
    """``/GetStatements``' request options; those left ``None`` are not sent.
    ``number_of_statements``: ``"MostRecent"``, ``"Months3"`` or ``"Months12"``."""

    number_of_statements: str | None
    accounts_filter: list[str] | None


class CallArgs(TypedDict, total=False):
    """What every single data call takes: ``request_id`` reuses a session (from
    :meth:`FlinksClient.authorize`); ``poll_timeout`` is this call's own (see
    :meth:`FlinksClient.with_options`)."""

    request_id: str | None
    poll_timeout: float | None


class AccountsDetailCall(CallArgs, AccountsDetailOptions, total=False):
    """:class:`CallArgs` plus :class:`AccountsDetailOptions`."""


class AccountsSummaryCall(CallArgs, AccountsSummaryOptions, total=False):
    """:class:`CallArgs` plus :class:`AccountsSummaryOptions`."""


class StatementsCall(CallArgs, StatementsOptions, total=False):
    """:class:`CallArgs` plus :class:`StatementsOptions`."""


class ManyOptions(TypedDict, total=False):
    """The options every fan-out takes (see :meth:`FlinksClient.many`)."""

    concurrency: int
    fail_fast: bool
    dedupe: bool | Literal["in-flight"]
    on_event: EventHook | None


class AccountsDetailMany(ManyOptions, AccountsDetailOptions, total=False):
    """:class:`ManyOptions` plus :class:`AccountsDetailOptions`."""


class AccountsSummaryMany(ManyOptions, AccountsSummaryOptions, total=False):
    """:class:`ManyOptions` plus :class:`AccountsSummaryOptions`."""


class StatementsMany(ManyOptions, StatementsOptions, total=False):
    """:class:`ManyOptions` plus :class:`StatementsOptions`."""
