"""Typed models of Flinks responses, decoded by msgspec straight from the response bytes.

Conventions, the same on every model:

* attributes are snake_case, mapped from Flinks' PascalCase (``RequestId`` -> ``request_id``);
* every field is optional: ``None`` when Flinks omits it or sends null (lists too);
* unknown fields are ignored, so a new Flinks field never breaks decoding;
* money and quantities are :class:`decimal.Decimal`, decoded exactly from the digits
  Flinks sent (a JSON number or a numeric string): ``0.1 + 0.2`` never reaches a ledger.
  Only ratios that are not money (``eft_eligible_ratio``...) are ``float``; the docs'
  Models page lists every numeric field and its type;
* numbers sent as strings are accepted (decoders run with ``strict=False``);
* dates are kept as the string Flinks sent (formats vary: ``2019/05/09``,
  ``2019-05-09T13:47:46.5227901``), so decoding never fails on a date; the ``*_at`` /
  ``parsed_*`` properties parse them leniently with :func:`parse_date` /
  :func:`parse_datetime` and give ``None`` for what they cannot read.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import msgspec

from ._errors import DecodeError

__all__ = [
    "Account",
    "AccountStatements",
    "AccountsDetail",
    "AccountsSummary",
    "Address",
    "Authorization",
    "Balance",
    "Holder",
    "Institution",
    "InvestmentAccount",
    "InvestmentTransaction",
    "Investments",
    "Link",
    "Login",
    "Position",
    "Security",
    "SecurityChallenge",
    "Statement",
    "Statements",
    "Transaction",
    "decoder_for",
    "parse_date",
    "parse_datetime",
    "resolve_security_ids",
]

_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")
_TIME = re.compile(r"[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?")


def parse_date(value: str | None) -> dt.date | None:
    """Read the date at the start of ``value``: ``YYYY-MM-DD`` or ``YYYY/MM/DD``, any time after.

    Returns ``None`` for ``None`` or anything it cannot read.
    """
    if not value:
        return None
    m = _DATE.match(value.strip())
    if m is None:
        return None
    try:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def parse_datetime(value: str | None) -> dt.datetime | None:
    """Read a Flinks timestamp leniently.

    Accepts ``/`` or ``-`` date separators, ``T`` or a space before the time, any number
    of fractional digits (kept to microseconds), and an optional ``Z`` or ``±HH:MM``
    offset. A timestamp without an offset stays naive (Flinks does not say which zone).
    A bare date reads as midnight. Returns ``None`` for what it cannot read.
    """
    day = parse_date(value)
    if day is None or value is None:
        return None
    rest = value.strip()[len(_DATE.match(value.strip())[0]) :]  # type: ignore[index]
    m = _TIME.match(rest)
    if m is None:
        return dt.datetime(day.year, day.month, day.day)
    frac = (m[4] or "0")[:6].ljust(6, "0")
    tz: dt.tzinfo | None = None
    if m[5]:
        if m[5] == "Z":
            tz = dt.UTC
        else:
            sign = 1 if m[5][0] == "+" else -1
            digits = m[5][1:].replace(":", "")
            tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        return dt.datetime(
            day.year, day.month, day.day, int(m[1]), int(m[2]), int(m[3] or 0), int(frac), tz
        )
    except ValueError:
        return None


class _Model(
    msgspec.Struct,
    rename="pascal",
    kw_only=True,
    omit_defaults=True,
    repr_omit_defaults=True,
    gc=False,
):
    """Base of every model: PascalCase on the wire, all fields optional."""

    #: the keys of this object the model does not map, with their values, when the client
    #: has ``keep_extra=True`` (else ``None``); see :mod:`flinks_async._schema`
    extra: dict[str, Any] | None = msgspec.field(default=None, name="__flinks_extra__")


class Link(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """A hypermedia link in a Flinks answer (lower-case keys on the wire)."""

    rel: str | None = None
    href: str | None = None
    example: str | None = None
    #: as on every model (see :class:`_Model`)
    extra: dict[str, Any] | None = msgspec.field(default=None, name="__flinks_extra__")


class Login(_Model):
    """The ``Login`` object of an Authorize answer. ``id`` is the loginId."""

    id: str | None = None
    username: str | None = None
    is_scheduled_refresh: bool | None = None
    last_refresh: str | None = None
    type: str | None = None

    @property
    def last_refresh_at(self) -> dt.datetime | None:
        """``last_refresh`` parsed leniently, as an aware UTC datetime: Flinks documents
        ``LastRefresh`` as UTC and sends it without an offset (an offset, when sent, is
        honoured and converted). ``None`` for a login never refreshed: Flinks then sends
        ``"0001-01-01T00:00:00"`` (.NET's ``DateTime.MinValue``), which is not a time."""
        when = parse_datetime(self.last_refresh)
        if when is None or when.year == 1:
            return None
        return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


class Institution(_Model):
    """An institution given as an object (``{"Id", "Name"}``), as in the integration guide."""

    id: int | str | None = None
    name: str | None = None


class Security(_Model):
    """A security, listed once in an ``/Investments`` answer's ``Securities``; positions and
    transactions refer to it by ``SecurityId`` (and reach it as ``.security``)."""

    id: str | None = None
    name: str | None = None
    symbol: str | None = None
    type: str | None = None
    price: Decimal | None = None
    date: str | None = None
    aliases: list[str] | None = None
    currency: str | None = None
    cusip: str | None = msgspec.field(default=None, name="CUSIP")
    isin: str | None = msgspec.field(default=None, name="ISIN")

    @property
    def parsed_date(self) -> dt.date | None:
        """``date`` (the date of ``price``) parsed leniently."""
        return parse_date(self.date)


#: the wire name of the resolved ``.security`` of a position or transaction: never sent by
#: Flinks, filled from the answer's ``Securities`` when the answer is decoded
_RESOLVED = "__flinks_security__"


class Position(_Model):
    """A holding in an investment account.

    ``security`` is the :class:`Security` whose ``id`` is ``security_id``, resolved from the
    answer's top-level ``Securities`` when the answer is decoded (``None`` when Flinks sent
    no such security: the client then reports it as schema drift).
    """

    id: str | None = None
    category: str | None = None
    class_: str | None = msgspec.field(default=None, name="Class")
    book_value: Decimal | None = None
    quantity: Decimal | None = None
    market_value: Decimal | None = None
    gain_amount: Decimal | None = None
    gain_currency_amount: Decimal | None = None
    gain_percent: float | None = None
    currency: str | None = None
    security_id: str | None = None
    security: Security | None = msgspec.field(default=None, name=_RESOLVED)


class InvestmentTransaction(_Model):
    """A trade, deposit, dividend, fee... in an investment account (``security`` as on
    :class:`Position`; ``None`` for a movement of cash)."""

    id: str | None = None
    date: str | None = None
    type: str | None = None
    description: str | None = None
    quantity: Decimal | None = None
    fee: Decimal | None = None
    amount: Decimal | None = None
    security_id: str | None = None
    security: Security | None = msgspec.field(default=None, name=_RESOLVED)

    @property
    def parsed_date(self) -> dt.date | None:
        """``date`` parsed leniently."""
        return parse_date(self.date)


class InvestmentAccount(_Model):
    """An investment account (``type`` is lower-case: tfsa, rrsp, fhsa, resp, margin, cash...)."""

    id: str | None = None
    full_account_id: str | None = None
    account_id: str | None = None
    name: str | None = None
    type: str | None = None
    registered: bool | None = None
    currency: str | None = None
    cash: Decimal | None = None
    account_value: Decimal | None = None
    currency_value: Decimal | None = None
    positions: list[Position] | None = None
    transactions: list[InvestmentTransaction] | None = None


class _Answer(_Model):
    """What every 200 data answer carries besides its data."""

    #: the attributes of which a 200 must hold at least one (else: schema drift)
    __data_fields__: ClassVar[tuple[str, ...]] = ()

    login: Login | None = None
    institution: str | Institution | None = None
    institution_name: str | None = None
    institution_id: int | str | None = None
    links: list[Link] | None = None
    tag: str | None = None
    request_id: str | None = None
    http_status_code: int | None = None
    #: set when the answer came by webhook: its kind (``"Investments"``...) and login
    response_type: str | None = None
    login_id: str | None = None

    @property
    def institution_display_name(self) -> str | None:
        """The institution's name, whichever form Flinks used."""
        if isinstance(self.institution, Institution):
            return self.institution.name
        return self.institution_name or self.institution


class Authorization(_Answer):
    """The answer of ``/Authorize``: the session's ``request_id`` and who logged in.

    ``institution`` is a string in most Flinks examples and an :class:`Institution`
    object in others; both are accepted. ``login_id`` is the id that was authorized.
    """

    login_id: str | None = None


class Investments(_Answer):
    """The ``200`` answer of ``/Investments``: accounts with their positions and
    transactions, and the securities they refer to (listed once, by ``Id``).

    Shape taken from the only real answer found (a 2020 sandbox answer kept in the
    ``flinkshahs/flinks-training-demo`` repository) and the docs' response fields table:
    ``Accounts``, ``Securities``, ``Value``, ``Cash``, ``Login``, ``Institution``
    (``{"Id", "Name"}``). Each position's and transaction's ``.security`` is resolved from
    ``securities`` once, through an index, when the answer is decoded.
    """

    __data_fields__ = ("accounts", "securities", "value", "cash")

    accounts: list[InvestmentAccount] | None = None
    securities: list[Security] | None = None
    value: Decimal | None = None
    cash: Decimal | None = None

    def __post_init__(self) -> None:
        self.resolve_securities()

    def resolve_securities(self) -> int:
        """Set ``.security`` on every position and transaction from ``securities``, through
        an index built once; return how many refer to an id that is not listed (their
        ``.security`` is ``None``). Runs on decoding; call it again after editing
        ``securities``."""
        index = {s.id: s for s in self.securities or () if s.id is not None}
        dangling = 0
        for account in self.accounts or ():
            for items in (account.positions, account.transactions):
                if items:
                    dangling += resolve_security_ids(index, items)
        return dangling

    def dangling_security_ids(self) -> list[str]:
        """The ``SecurityId`` values of positions and transactions that name no listed
        security, in order, without repeats."""
        seen: dict[str, None] = {}
        for account in self.accounts or ():
            for items in (account.positions, account.transactions):
                for item in items or ():
                    if item.security_id is not None and item.security is None:
                        seen[item.security_id] = None
        return list(seen)


def resolve_security_ids(
    index: dict[str, Security], items: list[Position] | list[InvestmentTransaction]
) -> int:
    """Set each item's ``.security`` from ``index`` (``{id: Security}``); return how many
    name an id that is not in it."""
    dangling = 0
    for item in items:
        ref = item.security_id
        if ref is not None:
            item.security = found = index.get(ref)
            if found is None:
                dangling += 1
    return dangling


class Balance(_Model):
    """An account balance."""

    available: Decimal | None = None
    current: Decimal | None = None
    limit: Decimal | None = None


class Address(_Model):
    """A postal address of an account holder."""

    civic_address: str | None = None
    city: str | None = None
    province: str | None = None
    postal_code: str | None = None
    po_box: str | None = msgspec.field(default=None, name="POBox")
    country: str | None = None


class Holder(_Model):
    """The holder of a bank account."""

    name: str | None = None
    address: Address | None = None
    email: str | None = None
    phone_number: str | None = None


class Transaction(_Model):
    """A bank-account transaction (``date`` as sent, e.g. ``2019/05/09``)."""

    id: str | None = None
    date: str | None = None
    code: int | str | None = None  # a number (or null) per Flinks' data types; text kept
    description: str | None = None
    debit: Decimal | None = None
    credit: Decimal | None = None
    balance: Decimal | None = None

    @property
    def parsed_date(self) -> dt.date | None:
        """``date`` parsed leniently."""
        return parse_date(self.date)


class Account(_Model):
    """A bank account of ``/GetAccountsDetail`` or ``/GetAccountsSummary``."""

    id: str | None = None
    title: str | None = None
    account_number: str | None = None
    last_four_digits: str | None = None
    transit_number: str | None = None
    institution_number: str | None = None
    overdraft_limit: Decimal | None = None
    balance: Balance | None = None
    category: str | None = None
    type: str | None = None
    currency: str | None = None
    holder: Holder | None = None
    account_type: str | None = None
    eft_eligible_ratio: float | None = None
    e_transfer_eligible_ratio: float | None = None
    transactions: list[Transaction] | None = None


class AccountsDetail(_Answer):
    """The ``200`` answer of ``/GetAccountsDetail`` (and of its ``...Async`` poll)."""

    __data_fields__ = ("accounts",)

    accounts: list[Account] | None = None


class AccountsSummary(AccountsDetail):
    """The ``200`` answer of ``/GetAccountsSummary`` (accounts carry no transactions)."""


class Statement(_Model):
    """One statement file; ``base64_bytes`` is the file, base64-encoded."""

    unique_id: str | None = None
    file_type: str | None = None
    base64_bytes: str | None = None

    def content(self) -> bytes:
        """The statement file's bytes (empty when Flinks sent none).

        Raises:
            DecodeError: ``base64_bytes`` is not valid base64 (the message says where it
                breaks, never the content).
        """
        if not self.base64_bytes:
            return b""
        try:
            return base64.b64decode(self.base64_bytes, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(
                f"statement {self.unique_id or '(no UniqueId)'}: Base64Bytes is not valid "
                f"base64 ({len(self.base64_bytes)} characters): {exc}"
            ) from None


class AccountStatements(_Model):
    """The statements of one account."""

    account_number: str | None = None
    statements: list[Statement] | None = None


class Statements(_Answer):
    """The ``200`` answer of ``/GetStatements``: the Flinks API reference's example, the
    node-flinks and C# SDK models agree on ``StatementsByAccount``, ``Login``,
    ``Institution`` (a string) and ``RequestId``."""

    __data_fields__ = ("statements_by_account",)

    statements_by_account: list[AccountStatements] | None = None


class SecurityChallenge(_Model):
    """One MFA question of a ``203`` answer from ``/Authorize`` (see
    :class:`~flinks_async.MFARequiredError`): ``type`` is ``QuestionAndAnswer``,
    ``MultipleChoice``, ``ImageSelection``...; ``iterables`` holds the choices offered."""

    type: str | None = None
    prompt: str | None = None
    iterables: list[str] | None = None


class ErrorBody(_Model):
    """The envelope of every non-200 Flinks answer."""

    http_status_code: int | None = None
    message: str | None = None
    flinks_code: str | None = None
    request_id: str | None = None
    security_challenges: list[SecurityChallenge] | None = None


class AnyObject(msgspec.Struct):
    """Matches any JSON object without building it: used to check a raw body is an object."""


M = TypeVar("M")
_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def decoder_for(model: type[M]) -> msgspec.json.Decoder[M]:
    """The shared ``msgspec.json.Decoder`` of ``model`` (with its ``__float_hook__``)."""
    dec = _DECODERS.get(model)
    if dec is None:
        hook = getattr(model, "__float_hook__", None)
        dec = _DECODERS[model] = msgspec.json.Decoder(model, strict=False, float_hook=hook)
    return dec
