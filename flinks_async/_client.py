"""`FlinksClient`: the public entry point.

The client owns what its calls share (the transport and its connection pool, the
single-flight table, the rate limiter and the shared flights it builds, the schema check)
and turns each call into a :class:`~flinks_async._polling.Plan`: the polling rule
(:mod:`flinks_async._polling`) runs it, :mod:`flinks_async._call` observes and shares it,
:mod:`flinks_async._authorize` opens its session. Its data methods are the rows of the
endpoint table it inherits (:class:`~flinks_async._endpoints.DataCalls`); the options are
stated once, in :mod:`flinks_async._options`.
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import AsyncIterable, Coroutine, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Self, TypeAlias, TypeVar, Unpack

import anyio
import msgspec

from . import _coordination, _otel
from ._authorize import Authorizer, check_login_id
from ._bulk import Result, check_many_options, many
from ._call import flight_key, observed, shared_run
from ._config import Settings
from ._coordination import WebhookHub
from ._deadlines import Deadlines
from ._decoding import Decoder, ModelDecoder
from ._endpoints import (
    AnyEndpoint,
    DataCalls,
    RawCalls,
    endpoint_named,
    endpoint_urls,
    fill,
    wire_options,
)
from ._enrich_calls import (
    CUSTOM_ATTRIBUTES,
    LIBRARY_PATHS,
    categories_path,
    custom_attributes_body,
)
from ._enrich_models import AttributeCategory, Attributes, CategoryGroup
from ._errors import ConfigurationError, DecodeError
from ._events import EventHook, scoped_hooks
from ._management import AccountManagement
from ._models import Authorization
from ._options import CallOptions, ClientOptions
from ._polling import Plan, run_plan
from ._receiver import WebhookLimits, WebhookReceiver
from ._schema import SchemaCheck
from ._singleflight import SingleFlight
from ._transport import Request, Transport
from ._webhooks import SIGNATURE_HEADERS, MemoryWebhooks, WebhookDelivery

__all__ = ["FlinksClient"]

_CLIENT_OPTIONS = ClientOptions.__required_keys__ | ClientOptions.__optional_keys__
_CALL_OPTIONS = tuple(CallOptions.__annotations__)
T = TypeVar("T")
Ids: TypeAlias = Iterable[str] | AsyncIterable[str]
#: what a fan-out returns: ``async with client.investments_many(ids) as results:``
Pull: TypeAlias = AbstractAsyncContextManager[AsyncIterable[Result[T]]]


def setup_in_doubt(client: FlinksClient, exc: BaseException) -> bool:
    """For the queue worker (not public): ``exc`` may be the key's fault, not the login's,
    the set-up breaker not having decided yet (``Guards.setup_in_doubt``): try it later."""
    return client._transport.setup_in_doubt(exc)


class FlinksClient(AccountManagement, DataCalls):
    """An asyncio client for one Flinks customer.

    Use it as ``async with FlinksClient(...) as client:`` (or call :meth:`aclose`), and keep
    one for the life of your app: it holds the connection pool, the single-flight table
    and the rate limiter. The HTTP session is created on first use, inside the running loop.

    ``customer_id`` is your Flinks customer GUID (else ``FLINKS_CUSTOMER_ID``), required.
    Every other option is a keyword, listed with its default in :class:`ClientOptions`
    (``base_url``, ``api_key``, ``secret_key``, ``poll_interval``, ``poll_timeout``,
    ``max_retries``, ``rate_limit``, ``redis_url``...). A bad value raises
    :class:`ConfigurationError`, an unknown keyword ``TypeError``.

    The data methods (``investments``, ``accounts_detail``, ``accounts_summary``,
    ``statements`` and their ``..._many`` fan-outs) are the rows of the endpoint table
    (:class:`~flinks_async._endpoints.DataCalls`); :attr:`raw` has the same methods
    answering the 200 body's bytes. The account-management methods
    (``set_scheduled_refresh``, ``nightly_refresh_status``, ``mfa_questions``,
    ``answer_mfa_questions``, ``institutions``, ``institution_by_routing_number``,
    ``delete_card``...) come from :class:`~flinks_async._management.AccountManagement`.
    """

    def __init__(self, customer_id: str | None = None, **options: Unpack[ClientOptions]) -> None:
        unknown = sorted(set(options) - _CLIENT_OPTIONS)
        if unknown:
            raise TypeError(f"FlinksClient() got an unexpected keyword argument {unknown[0]!r}")
        hooks = tuple(options.pop("event_hooks", ()))
        tracing = options.pop("tracing", False)
        self.settings = s = Settings.build(customer_id=customer_id, **options)
        self._tracer = _otel.get_tracer() if tracing else None
        # the client chooses the rate limiter and the shared flights; the transport and
        # the data calls are handed them (flinks_async._coordination)
        self._coordination = _coordination.build(s)
        share_limit, share_flights = _coordination.shared_parts(s)
        if share_limit or share_flights or (s.webhooks and s.redis_url):
            from . import _redis  # only with redis_url: import flinks_async never needs it

            _redis.attach(
                self._coordination,
                s,
                share_limit=share_limit,
                share_flights=share_flights,
                delivery_from=WebhookDelivery.from_body,
            )
        if s.webhooks and not s.redis_url:  # webhooks received by this process only
            hub = MemoryWebhooks(retention=s.webhook_retention, stream=s.webhook_stream)
            self._coordination.webhooks = hub
        self._transport = Transport(s, hooks, self._tracer, self._coordination.limiter)
        self._schema = SchemaCheck(strict=s.strict_schema, keep_extra=s.keep_extra, hooks=hooks)
        self._flights = SingleFlight()
        self._deadlines = Deadlines()  # the calls' deadlines: one timer (views share it)
        self._shared = self._coordination.flights  # across processes, with redis_url
        self._data_headers = {"x-api-key": s.api_key} if s.api_key else {}
        self._authorizer = Authorizer(self._transport, s)
        self._call_options = tuple(getattr(s, name) for name in _CALL_OPTIONS)
        self._urls = endpoint_urls(s)  # views share them: options leave URLs be

    def with_options(self, **options: Unpack[CallOptions]) -> Self:
        """A view of this client with other per-call options (``poll_timeout``,
        ``poll_interval``, ``poll_jitter``, ``max_retries``, ``backoff_initial``,
        ``backoff_max``, ``max_retry_after``), as the openai / anthropic clients do::

            web = client.with_options(poll_timeout=25, max_retries=1)
            inv = await web.investments(login_id)  # PollTimeoutError after 25 s

        The view shares the client's pool, single-flight table, rate limiter and breakers
        (closing it closes the client), and costs next to nothing. Calls through views with
        different options never share a poll: a 25 s handler never waits on (or cuts
        short) a 30-minute nightly run for the same login. A bad option or value raises
        :class:`ConfigurationError`.
        """
        settings = self.settings.replace_call_options(options)
        view = copy.copy(self)
        view.settings = settings
        view._authorizer = Authorizer(self._transport, settings)
        view._call_options = tuple(getattr(settings, n) for n in _CALL_OPTIONS)
        return view

    def __repr__(self) -> str:
        state = "closed" if self._transport.closed else "open"
        return f"<FlinksClient {self.settings.describe()} {state}>"

    async def __aenter__(self) -> Self:
        self._transport.session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel shared polls in progress and close every connection. Idempotent."""
        await self._flights.aclose()
        await self._transport.aclose()
        with anyio.CancelScope(shield=True):
            await self._coordination.aclose()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called (calls then raise :class:`ClientClosedError`)."""
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

    @property
    def webhooks(self) -> WebhookHub | None:
        """The hub webhooks wake this client's calls through (``webhooks=True``): in
        memory, or on Redis with ``redis_url``; ``None`` when webhooks are off. Its
        ``deliveries()`` needs a hub made with ``stream=True``
        (:class:`~flinks_async.MemoryWebhooks`, ``RedisWebhooks``)."""
        hub: WebhookHub | None = self._coordination.webhooks
        return hub

    def webhook_receiver(
        self,
        secrets: str | Iterable[str],
        *,
        header_names: Iterable[str] = SIGNATURE_HEADERS,
        max_body_bytes: int | None = None,
        limits: WebhookLimits | None = None,
    ) -> WebhookReceiver:
        """The endpoint to mount where Flinks POSTs webhooks (see
        :class:`~flinks_async.WebhookReceiver`), storing into :attr:`webhooks`, so that it
        wakes this client's calls (and, with ``redis_url``, every other process's).
        ``max_body_bytes`` defaults to the client's ``max_response_bytes``; what a POST
        may hold before its signature is checked is bounded by ``limits``
        (:class:`~flinks_async.WebhookLimits`), never by this client's
        ``max_body_bytes_in_flight``. :class:`ConfigurationError` when webhooks are off."""
        hub = self.webhooks
        if hub is None:
            raise ConfigurationError("webhook_receiver() needs FlinksClient(webhooks=True)")
        limit = self.settings.max_response_bytes if max_body_bytes is None else max_body_bytes
        return WebhookReceiver(
            hub, secrets, header_names=header_names, max_body_bytes=limit, limits=limits
        )

    # --- Authorize and one-off requests ----------------------------------------------

    async def authorize(self, login_id: str) -> Authorization:
        """Exchange a loginId for a session (``POST /Authorize``, cached mode): the
        :class:`Authorization`, whose ``request_id`` the data methods can reuse."""
        return await self._authorizer.authorize(check_login_id(login_id))

    async def answer_mfa(
        self, login_id: str, request_id: str, responses: Mapping[str, str | Sequence[str]]
    ) -> Authorization:
        """Answer the MFA questions of a ``203`` (:class:`MFARequiredError`): ``POST
        /Authorize`` again with its ``RequestId`` and ``SecurityResponses`` (``{prompt:
        answer or [answers]}``), sent once, never retried or logged. Returns the
        :class:`Authorization` (continue with ``request_id=auth.request_id``); raises
        :class:`MFARequiredError` again for a follow-up question and :class:`MFAError` for
        a wrong, unknown or missing answer (see the MFA section of the web-apps guide)."""
        return await self._authorizer.answer_mfa(login_id, request_id, responses)

    # --- Enrich's calls outside the endpoint table (flinks_async._enrich_calls) -----------

    async def custom_attributes(
        self,
        login_id: str,
        attributes: Iterable[str],
        *,
        filters: Iterable[str] | None = None,
        account_filter: Iterable[str] | None = None,
        attributes_detail: Iterable[str] | None = None,
        limit_days: int | None = None,
        request_id: str | None = None,
    ) -> Attributes:
        """The attributes named (``POST .../insight/login/{loginId}/attributes/{requestId}``)
        as one chain, like :meth:`income_attributes`: ``filters`` (``["Operations"]``, the
        only value Flinks allows), ``account_filter`` (AccountIds of the detail),
        ``attributes_detail`` (names, also in ``attributes``, whose transactions come
        back), ``limit_days`` (1-365). A refusal is an
        :class:`~flinks_async.AttributeRequestError` naming the case and what was refused."""
        body = custom_attributes_body(
            attributes,
            filters=filters,
            account_filter=account_filter,
            attributes_detail=attributes_detail,
            limit_days=limit_days,
        )
        encoded = msgspec.json.encode(body)
        value: Attributes = await self._start(
            CUSTOM_ATTRIBUTES, login_id, request_id, False, body, encoded
        )
        return value

    async def categories(self, country: str = "CA") -> list[CategoryGroup]:
        """Flinks' categorization list (``GET /Categories/{CA|US}``): no login, no session."""
        url = f"{self.settings.banking_url}/{categories_path(country)}"
        found: list[CategoryGroup] = await self._listing(url, "Categories", CategoryGroup)
        return found

    async def attribute_library(self, *, business: bool = False) -> list[AttributeCategory]:
        """The attribute dictionary (``GET /attributes/library``, ``/library/business``)."""
        url = f"{self.settings.customer_url}/{LIBRARY_PATHS[business]}"
        found: list[AttributeCategory] = await self._listing(
            url, "AttributeLibrary", AttributeCategory
        )
        return found

    async def _listing(self, url: str, name: str, item: type[Any]) -> list[Any]:
        """``GET url`` (a JSON array of ``item``), sent and retried as every request."""
        call = Request("GET", url, name, self._data_headers, None, None, settings=self.settings)
        reply = await self._transport.send(call)
        try:
            return msgspec.json.decode(reply.body, type=list[item], strict=False)  # type: ignore[valid-type]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(
                f"the answer is not a list of {item.__name__}: {exc}", endpoint=name
            ) from None

    # --- a data call -------------------------------------------------------------------

    @property
    def raw(self) -> RawCalls:
        """This client's data methods answering the 200 body's bytes (checked to be a
        JSON object), for archiving, as openai's ``with_raw_response`` does:
        ``await client.raw.investments(login_id)`` is ``bytes``, and
        ``client.raw.accounts_detail_many(ids)`` yields ``Result[bytes]``. Same options,
        same single-flight, same errors. (It replaces ``raw=True``, deprecated.)"""
        return RawCalls(self)

    async def fetch(
        self, endpoint: str, login_id: str, *, raw: bool = False, **options: Any
    ) -> Any:
        """Authorize (unless ``request_id``), call ``endpoint`` with that method's keywords,
        and poll until its 200 (the bytes with ``raw=True``). ``endpoint`` is a
        command-line name (``"investments"``, ``"accounts-detail"``, ``"accounts-summary"``,
        ``"statements"``) or a Flinks name (``"GetAccountsDetail"``...). Prefer the typed
        methods (:meth:`investments`...). Concurrent calls for the same login, endpoint
        and options share one run."""
        return await self._data_coroutine(endpoint, login_id, raw, options)

    async def _data_call(
        self, endpoint: AnyEndpoint, login_id: str, /, *, raw: bool | None = None, **o: Any
    ) -> Any:
        """``await client.<endpoint>(login_id, **o)``: the row's descriptor lands here (an
        ``async def``: a bad argument raises where the call is awaited, as it always did)."""
        if raw is not None:
            _deprecated_raw(endpoint.method_name)
        return await self._data_coroutine(endpoint, login_id, bool(raw), o)

    def _fan_out(
        self, endpoint: AnyEndpoint, login_ids: Ids, /, *, raw: bool | None = None, **o: Any
    ) -> Pull[Any]:
        """``client.<endpoint>_many(login_ids, **o)``: the row's descriptor lands here."""
        if raw is not None:
            _deprecated_raw(f"{endpoint.method_name}_many")
        return self.many(endpoint, login_ids, raw=bool(raw), **o)

    def _data_coroutine(
        self, endpoint: str | AnyEndpoint, login_id: str, raw: bool, options: Mapping[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """The coroutine of one data call (bad arguments raise here, before any request)."""
        row = endpoint_named(endpoint)
        if options:
            options = dict(options)
            request_id = options.pop("request_id", None)
            poll_timeout = options.pop("poll_timeout", None)
            if poll_timeout is not None:
                return self.with_options(poll_timeout=poll_timeout)._data_coroutine(
                    row, login_id, raw, {**options, "request_id": request_id}
                )
            body = wire_options(row, options) if options else {}
        else:  # the common case
            request_id, body = None, {}
        encoded = msgspec.json.encode(body) if body else b"{}"
        return self._start(row, login_id, request_id, raw, body, encoded)

    def _start(
        self,
        endpoint: AnyEndpoint,
        login_id: str,
        request_id: str | None,
        raw: bool,
        body: dict[str, Any],
        encoded: bytes,
    ) -> Coroutine[Any, Any, Any]:
        """Plan the call; the coroutine running it: with no hooks and no tracing, the
        single-flight run itself (each await of a request resumes through every frame above
        it: none of ours is added)."""
        login_id = check_login_id(login_id)
        shared = self._shared  # one run among every process on this Redis
        decode: Decoder
        if raw or shared is not None:  # shared runs hand bytes over; each caller decodes
            decode = ModelDecoder.of(endpoint.model, raw=True)
        else:
            decode = self._typed(endpoint, login_id)
        url = self._urls.get(endpoint.cli_name) or endpoint.route.url(
            endpoint.route.base(self.settings)
        )  # a call outside the table (custom_attributes) has none
        if endpoint.route.params:  # a route with {loginId} in its path
            url = fill(url, login_id=login_id)
        plan = Plan(
            endpoint=endpoint,
            login_id=login_id,
            request_id=request_id,
            body=body,
            settings=self.settings,
            decode=decode,
            url=url,
            headers=self._data_headers,
            transport=self._transport,
            authorize=self._authorizer.authorize,
            webhooks=self._coordination.webhooks,
            prepared=request_id is not None,  # a caller's session: its detail is asked
            deadlines=self._deadlines,
        )
        key = flight_key(plan, raw, encoded, self._call_options)
        if shared is None:
            work = functools.partial(run_plan, plan)
        else:  # raw or not, the same bytes: one shared key
            shared_key = flight_key(plan, False, encoded, self._call_options)
            typed = None if raw else self._typed(endpoint, login_id)
            work = functools.partial(shared_run, shared, shared_key, plan, typed)
        run = self._flights.run(key, work, plan)
        if self._tracer is None and not self._transport.hooks and not scoped_hooks.get():
            return run
        return observed(run, plan, self._tracer)

    def _typed(self, endpoint: AnyEndpoint, login_id: str) -> Decoder:
        """The typed decoder of a call, with the schema check."""
        model = endpoint.model
        return self._schema.wrap(
            ModelDecoder.of(model, raw=False), model, endpoint.flinks_name, login_id
        )

    def many(
        self,
        endpoint: str | AnyEndpoint,
        login_ids: Ids,
        *,
        concurrency: int = 50,
        fail_fast: bool = False,
        dedupe: bool | Literal["in-flight"] = True,
        on_event: EventHook | None = None,
        raw: bool = False,
        **options: Any,
    ) -> Pull[Any]:
        """Pull ``endpoint`` for every login id; results in completion order.

        ``endpoint`` is a command-line name (``"investments"``, ``"accounts-detail"``,
        ``"accounts-summary"``, ``"statements"``) or a Flinks name
        (``"GetAccountsDetail"``...); ``options`` are that endpoint method's options. The
        rules (one task per login in flight, back-pressure, exactly one result per
        distinct login, cancellation on leaving the block) are in :mod:`flinks_async._bulk`.
        Prefer the typed fan-outs (:meth:`investments_many`...).
        """
        spec = endpoint_named(endpoint)
        body = wire_options(spec, options)  # a bad option fails here, before any login starts
        encoded = msgspec.json.encode(body) if body else b"{}"
        check_many_options(concurrency, dedupe)

        def one(login_id: str) -> Coroutine[Any, Any, Any]:
            return self._start(spec, login_id, None, raw, body, encoded)

        return many(
            one,
            login_ids,
            concurrency=concurrency,
            fail_fast=fail_fast,
            dedupe=dedupe,
            on_event=on_event,
            endpoint=spec.flinks_name,
        )


def _deprecated_raw(method: str) -> None:
    warnings.warn(
        f"{method}(..., raw=...) is deprecated: use client.raw.{method}(...) for the bytes",
        DeprecationWarning,
        stacklevel=3,
    )
