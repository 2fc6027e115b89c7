"""The data endpoints: one table, and everything else derives from it.

Each row (an :class:`Endpoint`, a class attribute of :class:`DataCalls`) says:

* ``flinks_name``: the endpoint's name at Flinks (``"GetAccountsDetail"``), as errors,
  events, logs and spans show it, and ``cli_name``: its short name
  (``"accounts-detail"``) for ``pull --endpoint``, the queue, ``fetch()`` and ``many()``
  (which accept either);
* ``route``: the first request, an HTTP method and a path template under
  ``.../BankingServices/`` or, with ``root="customer"``, under ``/v3/{customerId}/``
  (a :class:`Route`; ``{loginId}`` and ``{requestId}`` may appear in it), and ``poll``:
  how a ``202`` is polled, the ``GET {name}Async/{requestId}`` route, or :data:`RESEND`
  (``None``) when the same request is sent again;
* ``after``: the rows whose calls must have finished in the same session first (Enrich's
  rows: ``GetAccountsDetail``), else ``()``;
* ``model``: what its 200 decodes into;
* ``call`` and ``many``: the ``TypedDict``\\ s of the keywords its single call and its
  fan-out take (:mod:`flinks_async._options`), and ``wire``: the wire name of each of
  its own request options (their allowed values come from the ``Literal`` types of the
  ``TypedDict``);
* ``response_type``: the webhook ``ResponseType`` that carries its answer (``None``: its
  answer is not pushed, it is always polled).

:class:`DataCalls` is the table *and* the client's data methods: ``FlinksClient`` inherits
it, so ``client.accounts_detail(...)`` and ``client.accounts_detail_many(...)`` are the
row's descriptors (typed by the row's ``TypedDict``\\ s and model, with no hand-written
overloads), and ``client.raw`` (:class:`RawCalls`) is the same table answering bytes.
:data:`ENDPOINTS` (by ``cli_name``) feeds ``fetch()``/``many()``, the command line's
choices, the queue, the webhook types and the emulator's routes.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypeAlias,
    TypeVar,
    overload,
)

from . import _options as opt
from ._config import Settings
from ._enrich_models import Attributes, Categorization
from ._errors import ConfigurationError
from ._models import AccountsDetail, AccountsSummary, Investments, Statements
from ._routes import PATH_PARAMS, RESEND, Route, fill

if TYPE_CHECKING:
    from typing import Self

    from ._blocking import BlockingResults
    from ._bulk import Result

__all__ = [
    "ENDPOINTS",
    "PATH_PARAMS",  # the routes', re-exported: they live in flinks_async._routes
    "RESEND",
    "AnyEndpoint",
    "BlockingCalls",
    "BlockingRawCalls",
    "DataCalls",
    "Endpoint",
    "FanOut",
    "RawCalls",
    "Route",
    "banking",
    "endpoint_named",
    "endpoint_urls",
    "enrich",
    "fill",
    "wire_options",
]

M = TypeVar("M")
M_co = TypeVar("M_co", covariant=True)
P = ParamSpec("P")
Q = ParamSpec("Q")
Ids = Iterable[str] | AsyncIterable[str]


class Single(Protocol[P, M_co]):
    """A data call bound to a client: ``await client.investments(login_id, **options)``."""

    @overload
    def __call__(
        self, login_id: str, *, raw: Literal[True], **options: Any
    ) -> Coroutine[Any, Any, bytes]: ...
    @overload
    def __call__(
        self, login_id: str, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, M_co]: ...
    @overload
    def __call__(self, login_id: str, *, raw: bool, **options: Any) -> Coroutine[Any, Any, Any]: ...


class Many(Protocol[Q, M_co]):
    """A fan-out bound to a client: ``async with client.investments_many(ids) as results:``."""

    @overload
    def __call__(
        self, login_ids: Ids, *, raw: Literal[True], **options: Any
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[bytes]]]: ...
    @overload
    def __call__(
        self, login_ids: Ids, *args: Q.args, **kwargs: Q.kwargs
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[M_co]]]: ...
    @overload
    def __call__(
        self, login_ids: Ids, *, raw: bool, **options: Any
    ) -> AbstractAsyncContextManager[AsyncIterable[Result[Any]]]: ...


class BlockingSingle(Protocol[P, M_co]):
    """A data call of the blocking client: ``client.investments(login_id, **options)``."""

    def __call__(self, login_id: str, *args: P.args, **kwargs: P.kwargs) -> M_co: ...


class BlockingMany(Protocol[Q, M_co]):
    """A fan-out of the blocking client: ``with client.investments_many(ids) as results:``."""

    def __call__(
        self, login_ids: Iterable[str], *args: Q.args, **kwargs: Q.kwargs
    ) -> AbstractContextManager[BlockingResults[M_co]]: ...


def _keys(typed_dict: object) -> tuple[str, ...]:
    return tuple(getattr(typed_dict, "__annotations__", {}))


def _choices(typed_dict: object, names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The values each option of ``names`` may take, where its type is a ``Literal``."""
    hints = typing.get_type_hints(typed_dict)
    out = {}
    for name in names:
        hint = hints[name]
        args = typing.get_args(hint) if typing.get_origin(hint) is not Literal else (hint,)
        values = tuple(v for a in args if typing.get_origin(a) is Literal for v in a.__args__)
        if values:
            out[name] = values
    return out


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Endpoint(Generic[M, P, Q]):
    """One data endpoint: a row of the table (see the module docstring), and the
    descriptor behind the client's method of the same name."""

    flinks_name: str  #: the Flinks name, e.g. ``"GetAccountsDetail"`` (errors, events, logs)
    cli_name: str  #: the short name, e.g. ``"accounts-detail"`` (CLI, queue, ``fetch``, ``many``)
    route: Route  #: the first request
    poll: Route | None  #: how a 202 is polled; :data:`RESEND`: the same request again
    model: type[M]
    call: Callable[P, object]  #: the single call's keywords (a ``TypedDict``)
    many: Callable[Q, object]  #: the fan-out's keywords (a ``TypedDict``)
    wire: Mapping[str, str]  #: each request option's wire name (``None``\\ s are not sent)
    response_type: str | None  #: the webhook ``ResponseType`` carrying its answer, if pushed
    #: a ``Settings`` field that, when set, is the full URL of ``route`` (``investments_url``)
    url_setting: str | None = None
    #: the rows whose calls must have finished in the same session first, in order
    #: (Enrich: the detail); a tuple, not a row: a row is a descriptor
    after: tuple[Endpoint[Any, ..., ...], ...] = ()
    #: the allowed values of options typed by a ``Literal`` (derived from ``call``)
    choices: Mapping[str, tuple[str, ...]] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        own = set(self.wire)
        for typed, shared in ((self.call, opt.CallArgs), (self.many, opt.ManyOptions)):
            if set(_keys(typed)) - set(_keys(shared)) != own:
                raise TypeError(f"{self.cli_name}: {typed} does not hold exactly {sorted(own)}")
        object.__setattr__(self, "choices", _choices(self.call, self.wire))

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self.method_name:
            raise TypeError(f"{self.cli_name} must be named {self.method_name}, not {name}")

    @property
    def method_name(self) -> str:
        """The client's method: ``"accounts_detail"`` (and ``"accounts_detail_many"``)."""
        return self.cli_name.replace("-", "_")

    @property
    def options(self) -> tuple[str, ...]:
        """The request options it takes, e.g. ``("with_balance", ...)``."""
        return tuple(self.wire)

    @property
    def poll_by_get(self) -> bool:
        """True: polled with ``GET {name}Async/{requestId}``; False: the request re-sent."""
        return self.poll is not None

    @property
    def name(self) -> str:
        """:attr:`flinks_name` (what errors and events call ``endpoint``)."""
        return self.flinks_name

    @property
    def key(self) -> str:
        """:attr:`cli_name`."""
        return self.cli_name

    def __repr__(self) -> str:
        return f"<Endpoint {self.flinks_name} ({self.cli_name})>"

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: BlockingRawCalls, owner: type[Any]) -> BlockingSingle[P, bytes]: ...
    @overload
    def __get__(self, obj: RawCalls, owner: type[Any]) -> Single[P, bytes]: ...
    @overload
    def __get__(self, obj: BlockingCalls, owner: type[Any]) -> BlockingSingle[P, M]: ...
    @overload
    def __get__(self, obj: object, owner: type[Any]) -> Single[P, M]: ...
    def __get__(self, obj: object, owner: type[Any]) -> Any:
        if obj is None:
            return self
        return functools.partial(obj._data_call, self)  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True, slots=True)
class FanOut(Generic[M, P, Q]):
    """The descriptor of an endpoint's fan-out (``client.accounts_detail_many``)."""

    endpoint: Endpoint[M, P, Q]

    def __set_name__(self, owner: type, name: str) -> None:
        if name != f"{self.endpoint.method_name}_many":
            raise TypeError(f"{name} must be {self.endpoint.method_name}_many")

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: BlockingRawCalls, owner: type[Any]) -> BlockingMany[Q, bytes]: ...
    @overload
    def __get__(self, obj: RawCalls, owner: type[Any]) -> Many[Q, bytes]: ...
    @overload
    def __get__(self, obj: BlockingCalls, owner: type[Any]) -> BlockingMany[Q, M]: ...
    @overload
    def __get__(self, obj: object, owner: type[Any]) -> Many[Q, M]: ...
    def __get__(self, obj: object, owner: type[Any]) -> Any:
        if obj is None:
            return self
        return functools.partial(obj._fan_out, self.endpoint)  # type: ignore[attr-defined]


def banking(
    flinks_name: str,
    cli_name: str,
    model: type[M],
    call: Callable[P, object],
    many: Callable[Q, object],
    wire: Mapping[str, str],
) -> Endpoint[M, P, Q]:
    """A row by the banking endpoints' rule: ``POST {flinks_name}``, polled with ``GET
    {flinks_name}Async/{requestId}``, its webhook's ``ResponseType`` its Flinks name."""
    return Endpoint(
        flinks_name=flinks_name,
        cli_name=cli_name,
        route=Route("POST", flinks_name),
        poll=Route("GET", flinks_name + "Async/{requestId}"),
        model=model,
        call=call,
        many=many,
        wire=wire,
        response_type=flinks_name,
    )


def enrich(
    flinks_name: str,
    model: type[M],
    after: AnyEndpoint,
    call: Callable[P, object],
    many: Callable[Q, object],
    path: str = "",
    method: str = "GET",
) -> Endpoint[M, P, Q]:
    """A row by Enrich's rule: ``GET`` (no body; or ``method``) under the customer root, by default
    ``insight/login/{loginId}/attributes/{requestId}/{flinks_name}``; asked once ``after``
    (the detail) has finished in the session; its 202s polled by sending it again (no
    ``...Async`` route is documented); never pushed. ``GetIncomeAttributes`` is
    ``income-attributes``. ``call``/``many``: its keywords' ``TypedDict``\\ s (typing the
    client's methods; no options of their own)."""
    path = path or f"insight/login/{{loginId}}/attributes/{{requestId}}/{flinks_name}"
    cli_name = re.sub(r"(?<!^)(?=[A-Z])", "-", flinks_name.removeprefix("Get")).lower()
    route = Route(method, path, "customer")
    return Endpoint(
        flinks_name, cli_name, route, RESEND, model, call, many, {}, None, after=(after,)
    )


_DETAIL_WIRE = {
    "days_of_transactions": "DaysOfTransactions",
    "with_transactions": "WithTransactions",
    "with_balance": "WithBalance",
    "with_account_identity": "WithAccountIdentity",
    "with_kyc": "WithKYC",
    "accounts_filter": "AccountsFilter",
    "date_from": "DateFrom",
    "date_to": "DateTo",
    "most_recent_cached": "MostRecentCached",
}


class DataCalls:
    """The table of data endpoints, and the client's data methods (one row each).

    ``client.<row>(login_id, **options)`` is one call (Authorize unless ``request_id``,
    the request, polls until its 200); ``client.<row>_many(login_ids, **options)`` the
    fan-out (see :meth:`FlinksClient.many`). ``request_id`` and ``poll_timeout`` are
    :class:`~flinks_async.CallArgs`; options left ``None`` are not sent.
    """

    __slots__ = ()

    def _data_coroutine(
        self, endpoint: str | AnyEndpoint, login_id: str, raw: bool, options: Mapping[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """The coroutine of one data call: the client's (the raw view calls it)."""
        raise NotImplementedError

    #: ``POST /Investments``, polled by re-POSTing: accounts, positions, transactions
    investments = Endpoint(
        flinks_name="Investments",
        cli_name="investments",
        route=Route("POST", "Investments"),
        poll=RESEND,
        model=Investments,
        call=opt.CallArgs,
        many=opt.ManyOptions,
        wire={},
        response_type="Investments",
        url_setting="investments_url",
    )
    investments_many = FanOut(investments)

    #: ``POST /GetAccountsDetail``: accounts with holder, balance and transactions
    accounts_detail = banking(
        "GetAccountsDetail", "accounts-detail", AccountsDetail, opt.AccountsDetailCall,
        opt.AccountsDetailMany, _DETAIL_WIRE,
    )  # fmt: skip
    accounts_detail_many = FanOut(accounts_detail)

    #: ``POST /GetAccountsSummary``: accounts without transactions
    accounts_summary = banking(
        "GetAccountsSummary", "accounts-summary", AccountsSummary, opt.AccountsSummaryCall,
        opt.AccountsSummaryMany,
        {"with_balance": "WithBalance", "with_account_identity": "WithAccountIdentity"},
    )  # fmt: skip
    accounts_summary_many = FanOut(accounts_summary)

    #: ``POST /GetStatements``: PDF statements, base64
    statements = banking(
        "GetStatements", "statements", Statements, opt.StatementsCall, opt.StatementsMany,
        {"number_of_statements": "NumberOfStatements", "accounts_filter": "AccountsFilter"},
    )  # fmt: skip
    statements_many = FanOut(statements)

    # --- Enrich (#33): each needs a finished detail in the same session (``after``)
    #: the Income package (employer income, its regularity)
    income_attributes = enrich(
        "GetIncomeAttributes", Attributes, accounts_detail, opt.CallArgs, opt.ManyOptions
    )
    income_attributes_many = FanOut(income_attributes)
    #: the Lending package (loans, micro-lenders)
    lending_attributes = enrich(
        "GetLendingAttributes", Attributes, accounts_detail, opt.CallArgs, opt.ManyOptions
    )
    lending_attributes_many = FanOut(lending_attributes)
    #: the Credit Risk package (NSF, overdrafts, cash flow)
    credit_risk_attributes = enrich(
        "GetCreditRiskAttributes", Attributes, accounts_detail, opt.CallArgs, opt.ManyOptions
    )
    credit_risk_attributes_many = FanOut(credit_risk_attributes)
    #: the User Analysis package (spending, activity)
    user_analysis_attributes = enrich(
        "GetUserAnalysisAttributes", Attributes, accounts_detail, opt.CallArgs, opt.ManyOptions
    )
    user_analysis_attributes_many = FanOut(user_analysis_attributes)
    #: every consumer attribute (Tier 2+)
    all_attributes = enrich(
        "GetAllAttributes", Attributes, accounts_detail, opt.CallArgs, opt.ManyOptions
    )
    all_attributes_many = FanOut(all_attributes)
    #: the Business Analysis package (``_biz`` attributes)
    business_analysis_attributes = enrich(
        "GetBusinessAnalysisAttributes", Attributes, accounts_detail, opt.CallArgs, opt.ManyOptions
    )
    business_analysis_attributes_many = FanOut(business_analysis_attributes)
    #: every business attribute (Tier 2+, Canada only)
    all_business_attributes = enrich(
        "GetAllBusinessAttributes", Attributes, accounts_detail, opt.CallArgs, opt.ManyOptions
    )
    all_business_attributes_many = FanOut(all_business_attributes)
    #: ``GET .../categorization/login/{loginId}/requestid/{requestId}``: categorized transactions
    categorization = enrich(
        "GetCategorization", Categorization, accounts_detail, opt.CallArgs, opt.ManyOptions,
        "categorization/login/{loginId}/requestid/{requestId}",
    )  # fmt: skip
    categorization_many = FanOut(categorization)


class RawCalls(DataCalls):
    """``client.raw``: the client's data methods answering the 200 body's bytes (checked
    to be a JSON object), for archiving: ``await client.raw.investments(login_id)`` is
    ``bytes``, ``client.raw.investments_many(ids)`` yields ``Result[bytes]``."""

    __slots__ = ("_client",)

    def __init__(self, client: Any) -> None:
        self._client = client

    async def _data_call(self, endpoint: AnyEndpoint, login_id: str, /, **options: Any) -> Any:
        return await self._client._data_coroutine(endpoint, login_id, True, options)

    def _fan_out(self, endpoint: AnyEndpoint, login_ids: Ids, /, **options: Any) -> Any:
        return self._client.many(endpoint, login_ids, raw=True, **options)

    def __repr__(self) -> str:
        return f"<raw view of {self._client!r}>"


class BlockingCalls(DataCalls):
    """The blocking client's data methods (``SyncFlinksClient`` inherits it): the same
    rows, typed as blocking calls and fan-outs (:class:`BlockingSingle`,
    :class:`BlockingMany`); the client defines ``_data_call`` and ``_fan_out``."""

    __slots__ = ()


class BlockingRawCalls(BlockingCalls):
    """``sync_client.raw``: the blocking data methods answering the 200 body's bytes."""

    __slots__ = ()


#: a row of the table, whatever its model and keywords
AnyEndpoint: TypeAlias = Endpoint[Any, ..., ...]
#: every data endpoint, by :attr:`Endpoint.cli_name`
ENDPOINTS: dict[str, AnyEndpoint] = {
    row.cli_name: row for row in vars(DataCalls).values() if isinstance(row, Endpoint)
}
_BY_FLINKS_NAME = {row.flinks_name: row for row in ENDPOINTS.values()}


def endpoint_named(name: str | AnyEndpoint) -> AnyEndpoint:
    """The row named ``name``, by its command-line name (``"accounts-detail"``) or its
    Flinks name (``"GetAccountsDetail"``); :class:`ConfigurationError` for another."""
    if isinstance(name, Endpoint):
        return name
    row = ENDPOINTS.get(name) or _BY_FLINKS_NAME.get(name)
    if row is None:
        raise ConfigurationError(
            f"unknown endpoint {name!r}; one of {', '.join(sorted(ENDPOINTS))} "
            f"(or their Flinks names: {', '.join(sorted(_BY_FLINKS_NAME))})"
        )
    return row


def endpoint_urls(settings: Settings) -> dict[str, str]:
    """Each endpoint's first URL under ``settings``, by ``cli_name`` (path parameters
    left as templates: :func:`fill` them per call)."""
    return {
        key: (getattr(settings, row.url_setting) if row.url_setting else None)
        or row.route.url(row.route.base(settings))
        for key, row in ENDPOINTS.items()
    }


def wire_options(endpoint: AnyEndpoint, options: Mapping[str, Any]) -> dict[str, Any]:
    """The request body fields for ``options``; :class:`ConfigurationError` naming every
    option ``endpoint`` does not take, or a value its ``Literal`` type does not allow
    (``days_of_transactions``: what Flinks accepts)."""
    unknown = sorted(name for name in options if name not in endpoint.wire)
    if unknown:
        takes = ", ".join(endpoint.options) or "no options"
        raise ConfigurationError(
            f"{endpoint.cli_name} does not take {', '.join(map(repr, unknown))} (it takes: {takes})"
        )
    for name, allowed in endpoint.choices.items():
        value = options.get(name)
        if value is not None and value not in allowed:
            raise ConfigurationError(
                f"{name} must be one of {', '.join(allowed)} (what Flinks accepts), got {value!r}"
            )
    return {endpoint.wire[k]: v for k, v in options.items() if v is not None}
