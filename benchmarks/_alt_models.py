"""The contenders' models: pydantic v2 and stdlib dataclasses equivalent to ours, and the
float-money twins of ours (v0.1).

Same fields, all optional, PascalCase on the wire, unknown fields ignored.
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import operator
import types
import typing
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal


class _P(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, extra="ignore")


class PSecurity(_P):
    id: str | None = None
    name: str | None = None
    symbol: str | None = None
    type: str | None = None
    price: float | None = None
    date: str | None = None
    aliases: list[str] | None = None
    currency: str | None = None
    cusip: str | None = Field(default=None, alias="CUSIP")
    isin: str | None = Field(default=None, alias="ISIN")


class PPosition(_P):
    id: str | None = None
    category: str | None = None
    class_: str | None = Field(default=None, alias="Class")
    book_value: float | None = None
    quantity: float | None = None
    market_value: float | None = None
    gain_amount: float | None = None
    gain_currency_amount: float | None = None
    gain_percent: float | None = None
    currency: str | None = None
    security_id: str | None = None


class PInvTx(_P):
    id: str | None = None
    date: str | None = None
    type: str | None = None
    description: str | None = None
    quantity: float | None = None
    fee: float | None = None
    amount: float | None = None
    security_id: str | None = None


class PInvAccount(_P):
    id: str | None = None
    full_account_id: str | None = None
    account_id: str | None = None
    name: str | None = None
    type: str | None = None
    registered: bool | None = None
    currency: str | None = None
    cash: float | None = None
    account_value: float | None = None
    currency_value: float | None = None
    positions: list[PPosition] | None = None
    transactions: list[PInvTx] | None = None


class PInstitution(_P):
    id: int | str | None = None
    name: str | None = None


class PInvestments(_P):
    accounts: list[PInvAccount] | None = None
    securities: list[PSecurity] | None = None
    value: float | None = None
    cash: float | None = None
    institution: PInstitution | str | None = None
    request_id: str | None = None
    http_status_code: int | None = None


class PBalance(_P):
    available: float | None = None
    current: float | None = None
    limit: float | None = None


class PAddress(_P):
    civic_address: str | None = None
    city: str | None = None
    province: str | None = None
    postal_code: str | None = None
    po_box: str | None = Field(default=None, alias="POBox")
    country: str | None = None


class PHolder(_P):
    name: str | None = None
    address: PAddress | None = None
    email: str | None = None
    phone_number: str | None = None


class PTransaction(_P):
    id: str | None = None
    date: str | None = None
    code: str | None = None
    description: str | None = None
    debit: float | None = None
    credit: float | None = None
    balance: float | None = None


class PAccount(_P):
    id: str | None = None
    title: str | None = None
    account_number: str | None = None
    last_four_digits: str | None = None
    transit_number: str | None = None
    institution_number: str | None = None
    overdraft_limit: float | None = None
    balance: PBalance | None = None
    category: str | None = None
    type: str | None = None
    currency: str | None = None
    holder: PHolder | None = None
    account_type: str | None = None
    eft_eligible_ratio: float | None = None
    e_transfer_eligible_ratio: float | None = Field(default=None, alias="ETransferEligibleRatio")
    transactions: list[PTransaction] | None = None


class PAccountsDetail(_P):
    accounts: list[PAccount] | None = None
    institution: str | None = None
    request_id: str | None = None
    http_status_code: int | None = None


# --- dataclasses: json.loads, then a hand-written conversion (what many SDKs do) --------


@dataclasses.dataclass(slots=True)
class DSecurity:
    id: str | None
    symbol: str | None
    name: str | None
    price: float | None
    isin: str | None


@dataclasses.dataclass(slots=True)
class DPosition:
    quantity: float | None
    market_value: float | None
    book_value: float | None
    security: DSecurity | None


@dataclasses.dataclass(slots=True)
class DInvTx:
    id: str | None
    date: str | None
    type: str | None
    description: str | None
    quantity: float | None
    fee: float | None
    amount: float | None
    security: DSecurity | None


@dataclasses.dataclass(slots=True)
class DInvAccount:
    id: str | None
    name: str | None
    type: str | None
    account_value: float | None
    positions: list[DPosition]
    transactions: list[DInvTx]


@dataclasses.dataclass(slots=True)
class DTransaction:
    id: str | None
    date: str | None
    description: str | None
    debit: float | None
    credit: float | None
    balance: float | None


@dataclasses.dataclass(slots=True)
class DAccount:
    id: str | None
    title: str | None
    balance: float | None
    transactions: list[DTransaction]


def investments_dataclasses(obj: dict[str, Any]) -> list[DInvAccount]:
    securities = {
        d.get("Id"): DSecurity(
            d.get("Id"), d.get("Symbol"), d.get("Name"), d.get("Price"), d.get("ISIN")
        )
        for d in obj.get("Securities") or ()
    }
    out = []
    for a in obj.get("Accounts") or ():
        out.append(
            DInvAccount(
                a.get("Id"),
                a.get("Name"),
                a.get("Type"),
                a.get("AccountValue"),
                [
                    DPosition(
                        p.get("Quantity"),
                        p.get("MarketValue"),
                        p.get("BookValue"),
                        securities.get(p.get("SecurityId")),
                    )
                    for p in a.get("Positions") or ()
                ],
                [
                    DInvTx(
                        t.get("Id"),
                        t.get("Date"),
                        t.get("Type"),
                        t.get("Description"),
                        t.get("Quantity"),
                        t.get("Fee"),
                        t.get("Amount"),
                        securities.get(t.get("SecurityId")),
                    )
                    for t in a.get("Transactions") or ()
                ],
            )
        )
    return out


def accounts_dataclasses(obj: dict[str, Any]) -> list[DAccount]:
    return [
        DAccount(
            a.get("Id"),
            a.get("Title"),
            (a.get("Balance") or {}).get("Current"),
            [
                DTransaction(
                    t.get("Id"),
                    t.get("Date"),
                    t.get("Description"),
                    t.get("Debit"),
                    t.get("Credit"),
                    t.get("Balance"),
                )
                for t in a.get("Transactions") or ()
            ],
        )
        for a in obj.get("Accounts") or ()
    ]


# --- v0.1's float money, for the cost of exact Decimal money --------------------------

_TWINS: dict[tuple[type[Any], Any], type[Any]] = {}


def float_twin(model: type[Any]) -> type[Any]:
    """A copy of msgspec ``model`` (nested models too) with every ``Decimal`` a ``float``:
    the models as v0.1 had them, derived from today's so the two cannot drift apart."""
    return money_twin(model, float)


def raw_twin(model: type[Any]) -> type[Any]:
    """A copy of ``model`` with every ``Decimal`` a ``msgspec.Raw``: what "lazy money"
    (keep each amount's JSON text, build the ``Decimal`` on access) would cost to decode."""
    return money_twin(model, msgspec.Raw)


def money_twin(model: type[Any], money: Any) -> type[Any]:
    """A copy of msgspec ``model`` (nested models too) with every ``Decimal`` of type
    ``money``, and the same ``__post_init__`` (an /Investments answer resolves its
    securities on decoding): the comparison measures the money type, nothing else."""
    if (model, money) in _TWINS:
        return _TWINS[model, money]
    fields = [
        (f.name, _money_type(f.type, money), msgspec.field(default=f.default, name=f.encode_name))
        for f in msgspec.structs.fields(model)
    ]
    namespace = {
        k: v for k, v in vars(model).items() if k in ("__post_init__", "resolve_securities")
    }
    twin = msgspec.defstruct(
        f"{money.__name__.title()}{model.__name__}",
        fields,
        kw_only=True,
        omit_defaults=True,
        gc=False,
        namespace=namespace,
    )
    _TWINS[model, money] = twin
    return twin


def _money_type(tp: Any, money: Any) -> Any:
    if tp is decimal.Decimal:
        return money
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return money_twin(tp, money)
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if money is msgspec.Raw and decimal.Decimal in args:
            return msgspec.Raw  # msgspec takes Raw alone, not in a union (null is kept raw)
        return functools.reduce(operator.or_, [_money_type(a, money) for a in args])
    if typing.get_origin(tp) is list:
        return list[_money_type(args[0], money)]  # type: ignore[misc]
    return tp
