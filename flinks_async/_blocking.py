"""`SyncFlinksClient`: the blocking client, for Django, Celery, notebooks and scripts.

It is a :class:`~flinks_async.FlinksClient` living in one event loop shared by every
thread (:class:`~flinks_async._portal.LoopThread`: run by a calling thread, or by its
own thread while others' calls need it), and the same table of endpoints
(:class:`~flinks_async._endpoints.BlockingCalls`: every row of
:class:`~flinks_async._endpoints.DataCalls`, typed as a blocking call and a blocking
fan-out): a row added to the table is a method here too, with its types. The async
client's other coroutine methods are exposed one line each, typed by their own
signature::

    authorize = blocking(FlinksClient.authorize)

Every call is the async client's call, awaited in the loop: the same options,
environment variables, single-flight, rate limit and errors (the exception raised in the
loop is raised in the calling thread). Any number of threads share one client.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Self, TypeVar, Unpack, overload

from ._bulk import Result
from ._client import FlinksClient
from ._config import Settings
from ._endpoints import AnyEndpoint, BlockingCalls, BlockingRawCalls
from ._events import EventHook
from ._management import MAX_PAGE
from ._management_models import FinancialInstitution
from ._options import CallOptions, ClientOptions
from ._portal import Held, LoopThread
from ._receiver import WebhookLimits, WebhookReceiver
from ._webhooks import SIGNATURE_HEADERS
from ._wsgi import WSGIWebhookReceiver

__all__ = ["BlockingResults", "SyncFlinksClient", "blocking"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class blocking(Generic[P, R]):
    """The blocking twin of a coroutine method of :class:`FlinksClient`, typed by its
    signature: ``authorize = blocking(FlinksClient.authorize)`` in the class body makes
    ``sync_client.authorize(login_id)`` an ``Authorization``."""

    def __init__(self, method: Callable[Concatenate[FlinksClient, P], Awaitable[R]]) -> None:
        self.name: str = method.__name__
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self.name:
            raise TypeError(f"blocking(FlinksClient.{self.name}) must be named {self.name}")

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: SyncFlinksClient, owner: type[Any]) -> Callable[P, R]: ...
    def __get__(self, obj: SyncFlinksClient | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        return functools.partial(obj._await, self.name)


class BlockingResults(Iterator[Result[T_co]]):
    """The results of a blocking fan-out, in completion order (see
    :meth:`SyncFlinksClient.many`); ``duplicates``: login ids skipped as repeats."""

    def __init__(self, loop: LoopThread[Any], results: AsyncIterable[Result[T_co]]) -> None:
        self._loop = loop
        self._results = results
        self._next = aiter(results).__anext__

    def __next__(self) -> Result[T_co]:
        try:
            return self._loop.run(self._next)
        except StopAsyncIteration:
            raise StopIteration from None

    @property
    def duplicates(self) -> int:
        """Login ids skipped so far as repeats of one seen before (``dedupe``)."""
        return int(getattr(self._results, "duplicates", 0))


class BlockingPull(AbstractContextManager[BlockingResults[T]]):
    """``with client.investments_many(ids) as results:``: the async fan-out's block,
    entered and left in the loop (one task, as anyio's task groups need), the loop kept
    running while it is open."""

    def __init__(
        self, loop: LoopThread[Any], pull: AbstractAsyncContextManager[AsyncIterable[Result[T]]]
    ) -> None:
        self._loop = loop
        self._held = Held(loop, pull)

    def __enter__(self) -> BlockingResults[T]:
        return BlockingResults(self._loop, self._held.__enter__())

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if exc is not None and not isinstance(exc, Exception):
            # Ctrl-C, SystemExit: leave the block as on ``break`` (every login in flight
            # cancelled, its connection closed), not by raising it in the loop
            self._held.__exit__(None, None, None)
            return None
        return self._held.__exit__(typ, exc, tb)


class SyncFlinksClient(BlockingCalls):
    """A blocking client for one Flinks customer: :class:`FlinksClient`'s calls, for code
    that is not async (Django, Flask, Celery, scripts, notebooks). See docs/sync.md.

    It takes exactly :class:`FlinksClient`'s arguments (and environment variables), and
    raises the same errors. Keep one for the life of the process and share it between
    threads: it has one event loop (started on first use), where its connection pool,
    single-flight table and rate limiter live, run by the calling thread when no other
    thread runs it, else by the thread running it (see
    :class:`~flinks_async._portal.LoopThread`). Use it as ``with
    SyncFlinksClient(...) as client:`` or call :meth:`close`; one still open closes itself
    at interpreter exit. After ``os.fork()`` (Celery's prefork pool), a client made in
    the parent opens a new loop and pool in the child by itself.

    ``KeyboardInterrupt`` (Ctrl-C) in a waiting thread cancels that call at once: no request
    goes out after it. ``poll_timeout=`` (on each data call, or :meth:`with_options`) bounds
    a call in all, Authorize included, the same way.
    """

    def __init__(self, customer_id: str | None = None, **options: Unpack[ClientOptions]) -> None:
        make = functools.partial(FlinksClient, customer_id, **options)
        self._loop: LoopThread[FlinksClient] = LoopThread(
            "flinks-async-loop", make, FlinksClient.aclose
        )
        self._view_options: dict[str, Any] = {}  # with_options()'s, kept to rebuild
        self._view = self._loop.owned
        self._generation = self._loop.generation

    def _client(self) -> FlinksClient:
        """The async client (or view) this one calls: rebuilt in a child after fork."""
        loop = self._loop
        if self._generation != loop.generation:
            base = loop.owned
            self._view = base.with_options(**self._view_options) if self._view_options else base
            self._generation = loop.generation
        return self._view

    def with_options(self, **options: Unpack[CallOptions]) -> Self:
        """A view with other per-call options, sharing this client's loop, pool and
        limits (see :meth:`FlinksClient.with_options`); closing it closes the client."""
        view = self._client().with_options(**options)
        other = object.__new__(type(self))
        other._loop = self._loop
        other._view_options = {**self._view_options, **options}
        other._view = view
        other._generation = self._generation
        return other

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<SyncFlinksClient {self.settings.describe()} {state}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel shared polls in progress, close every connection, stop the loop and
        join its thread. Idempotent; calls then raise :class:`ClientClosedError`."""
        self._loop.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._loop.closed

    @property
    def settings(self) -> Settings:
        """The client's (or this view's) settings."""
        return self._client().settings

    @property
    def schema_drift(self) -> dict[str, dict[str, int]]:
        """See :attr:`FlinksClient.schema_drift`."""
        return self._client().schema_drift

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent since the client was created (in this process)."""
        return self._client().requests_sent

    @property
    def in_flight_requests(self) -> int:
        """HTTP requests currently holding a connection."""
        return self._client().in_flight_requests

    def webhook_receiver(
        self,
        secrets: str | Iterable[str],
        *,
        header_names: Iterable[str] = SIGNATURE_HEADERS,
        max_body_bytes: int | None = None,
        limits: WebhookLimits | None = None,
    ) -> WSGIWebhookReceiver:
        """Where Flinks POSTs webhooks, for a sync web app: a WSGI app, and
        ``.receive(headers, body)`` for a Django view (see
        :class:`~flinks_async._wsgi.WSGIWebhookReceiver` and docs/sync.md), storing into
        this client's hub (:meth:`FlinksClient.webhook_receiver`: the same arguments and
        gates). :class:`ConfigurationError` when webhooks are off."""
        loop = self._loop
        secrets = secrets if isinstance(secrets, str) else tuple(secrets)

        def make() -> WebhookReceiver:  # again in a child after fork: its new hub
            return loop.owned.webhook_receiver(
                secrets, header_names=header_names, max_body_bytes=max_body_bytes, limits=limits
            )

        return WSGIWebhookReceiver(loop, make)

    @property
    def raw(self) -> BlockingRaw:
        """The data methods answering the 200 body's bytes (see :attr:`FlinksClient.raw`):
        ``client.raw.investments(login_id)`` is ``bytes``."""
        return BlockingRaw(self)

    # --- FlinksClient's coroutine methods, one line each --------------------------------

    authorize = blocking(FlinksClient.authorize)
    answer_mfa = blocking(FlinksClient.answer_mfa)
    delete_card = blocking(FlinksClient.delete_card)
    # account management (docs/nightly.md)
    set_scheduled_refresh = blocking(FlinksClient.set_scheduled_refresh)
    nightly_refresh_status = blocking(FlinksClient.nightly_refresh_status)
    mfa_questions = blocking(FlinksClient.mfa_questions)
    answer_mfa_questions = blocking(FlinksClient.answer_mfa_questions)
    institutions_page = blocking(FlinksClient.institutions_page)
    institution_by_routing_number = blocking(FlinksClient.institution_by_routing_number)
    # Enrich's calls outside the endpoint table (docs/enrich.md)
    custom_attributes = blocking(FlinksClient.custom_attributes)
    categories = blocking(FlinksClient.categories)
    attribute_library = blocking(FlinksClient.attribute_library)

    def institutions(self, page_size: int = MAX_PAGE) -> Generator[FinancialInstitution]:
        """:meth:`FlinksClient.institutions`, blocking: every institution of the directory,
        the next page fetched (in the loop) when the last one is used up."""
        items = self._client().institutions(page_size)
        try:
            while True:
                try:
                    yield self._loop.run(items.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None and not self._loop.closed:
                self._loop.run(aclose)

    def fetch(self, endpoint: str, login_id: str, *, raw: bool = False, **options: Any) -> Any:
        """:meth:`FlinksClient.fetch`, blocking (written out: ``blocking()`` cannot type a
        method taking ``**options`` beside a named ``self``)."""
        return self._await("fetch", endpoint, login_id, raw=raw, **options)

    def _await(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Await the async client's method ``name`` in the loop (the twins land here)."""
        return self._loop.run(functools.partial(getattr(self._client(), name), *args, **kwargs))

    # --- the table's rows land here -------------------------------------------------------

    def _data_call(
        self, endpoint: AnyEndpoint, login_id: str, /, *, raw: bool = False, **o: Any
    ) -> Any:
        return self._await("fetch", endpoint.cli_name, login_id, raw=raw, **o)

    def _fan_out(self, endpoint: AnyEndpoint, login_ids: Iterable[str], /, **o: Any) -> Any:
        return self.many(endpoint.cli_name, login_ids, **o)

    def many(
        self,
        endpoint: str,
        login_ids: Iterable[str],
        *,
        concurrency: int = 50,
        fail_fast: bool = False,
        dedupe: bool | Literal["in-flight"] = True,
        on_event: EventHook | None = None,
        raw: bool = False,
        **options: Any,
    ) -> BlockingPull[Any]:
        """:meth:`FlinksClient.many`, blocking: ``with client.many("investments", ids) as
        results: for r in results: ...``. The same rules: at most ``concurrency`` logins
        in flight, a slow consumer stops new ones from starting (back-pressure), leaving
        the block (``break``, an exception, Ctrl-C) cancels those in flight. ``login_ids``
        is read while the loop runs (in whichever thread runs it): pass a list, or an
        iterator that reads no thread-bound resource (a Django queryset:
        ``list(qs.values_list(...))`` first).
        ``on_event`` is called in the thread running the loop. Bad options raise here."""
        pull = self._client().many(
            endpoint,
            login_ids,
            concurrency=concurrency,
            fail_fast=fail_fast,
            dedupe=dedupe,
            on_event=on_event,
            raw=raw,
            **options,
        )
        return BlockingPull(self._loop, pull)


class BlockingRaw(BlockingRawCalls):
    """``sync_client.raw``: the blocking data methods answering bytes."""

    __slots__ = ("_client",)

    def __init__(self, client: SyncFlinksClient) -> None:
        self._client = client

    def _data_call(self, endpoint: AnyEndpoint, login_id: str, /, **options: Any) -> Any:
        return self._client.fetch(endpoint.cli_name, login_id, raw=True, **options)

    def _fan_out(self, endpoint: AnyEndpoint, login_ids: Iterable[str], /, **options: Any) -> Any:
        return self._client.many(endpoint.cli_name, login_ids, raw=True, **options)

    def __repr__(self) -> str:
        return f"<raw view of {self._client!r}>"
