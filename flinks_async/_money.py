"""The money rule: every money field of a decoded answer is a finite ``Decimal`` of sane
size, or ``None`` (Flinks sent ``null`` or nothing).

msgspec builds a ``Decimal`` from whatever :class:`decimal.Decimal` accepts, so without
this check ``"NaN"``, ``"sNaN"``, ``"Infinity"`` or ``1e999999999`` would reach the
application as a value whose first comparison or sum raises ``InvalidOperation`` or
``Overflow`` in the user's code. :func:`check_money` refuses such an answer with a
:class:`~flinks_async.DecodeError` that names the model, the field and where it is
(``Balance.Current at $.Accounts[0].Balance: NaN``), never the amount itself. The error is
final (the same bytes would fail again) and runs on every typed answer: it does not depend
on the drift sample. Values that are not numbers at all (``"12,50"``, ``true``, ``"N/A"``)
are refused the same way by :mod:`flinks_async._schema`.

The rule, exactly: NaN, sNaN and infinities are always refused; a finite value below
``10**MAX_EXPONENT`` (``10**30``) in magnitude is always accepted; a value of ``10**42`` or
more is always refused; in between, a value may be refused (the check sums, see below).
Every accepted value is therefore finite and below ``10**42``: ordinary ``Decimal``
arithmetic on it cannot overflow. Tiny non-zero values (``1e-999999999``) are accepted:
they add, compare, round and print normally.

How, and what it costs: for each money field of each model, the values of all objects are
summed in C (``sum`` over ``map(attrgetter)``, rounded to 34 digits) in a
:class:`decimal.Context` whose ``Emax`` is ``MAX_EXPONENT + 10`` and which traps
``Overflow`` and ``InvalidOperation``. A NaN or an infinity makes the sum non-finite, an
``sNaN`` or ``Infinity - Infinity`` raises, and a value of ``10**42`` or more overflows
the running sum (which stays below ``10**41`` until then), while fewer than ``10**10``
values each below ``10**30`` never reach it. Only when the sum fails is the answer walked
value by value to say where. The cost is measured in ``python -m benchmarks --only
decoding`` (the docs' Performance page gives it).
"""

from __future__ import annotations

import decimal
import itertools
import operator
import types
import typing
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import msgspec

from ._errors import DecodeError

__all__ = ["MAX_EXPONENT", "check_money", "money_fine"]

#: money values below ``10**MAX_EXPONENT`` in magnitude are always accepted (see above)
MAX_EXPONENT = 30

_CONTEXT = decimal.Context(
    prec=34,
    Emax=MAX_EXPONENT + 10,
    Emin=-decimal.MAX_EMAX,
    traps=[decimal.InvalidOperation, decimal.Overflow],
)
_ZERO = Decimal(0)
_chain = itertools.chain.from_iterable


class _MoneyMap(typing.NamedTuple):
    """Where a model keeps money: its own Decimal fields, and the models under it."""

    money: tuple[tuple[str, Callable[[Any], Any]], ...]  # (wire name, getter)
    children: tuple[tuple[str, Callable[[Any], Any], type[Any], bool], ...]  # + model, many


_MONEY_MAPS: dict[type[Any], _MoneyMap | None] = {}


def _money_map(model: type[Any]) -> _MoneyMap | None:
    """The model's plan, or ``None`` when no money can be under it (computed once)."""
    if model in _MONEY_MAPS:
        return _MONEY_MAPS[model]
    _MONEY_MAPS[model] = None  # a model that refers to itself holds no money through itself
    money: list[tuple[str, Callable[[Any], Any]]] = []
    children: list[tuple[str, Callable[[Any], Any], type[Any], bool]] = []
    for f in msgspec.structs.fields(model):
        if f.encode_name.startswith("__flinks_"):
            continue  # .extra, a resolved .security: not what Flinks sent
        tp = _strip_none(f.type)
        many = typing.get_origin(tp) is list
        inner = _strip_none(typing.get_args(tp)[0]) if many else tp
        if inner is Decimal and not many:
            money.append((f.encode_name, operator.attrgetter(f.name)))
        elif (
            isinstance(inner, type)
            and issubclass(inner, msgspec.Struct)
            and _money_map(inner) is not None
        ):
            children.append((f.encode_name, operator.attrgetter(f.name), inner, many))
    plan = _MoneyMap(tuple(money), tuple(children)) if money or children else None
    _MONEY_MAPS[model] = plan
    return plan


def _strip_none(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return args[0] if len(args) == 1 else object  # str | Institution: no money there
    return tp


def check_money(value: Any, model: type[Any]) -> None:
    """Raise :class:`~flinks_async.DecodeError` (``.field`` set, not retryable) when a money
    field of ``value`` (a decoded ``model``) is not a finite number of sane size."""
    if not money_fine([value], model):
        raise _first_bad(value, model)


def money_fine(values: list[Any], model: type[Any]) -> bool:
    """Whether every money field of ``values`` (each a decoded ``model``) is a finite number of
    sane size: :func:`check_money` without the error, for a list of them."""
    plan = _money_map(model)
    if plan is None or not values:
        return True
    parts: list[Iterable[Any]] = []
    _gather(values, plan, parts)
    try:
        with decimal.localcontext(_CONTEXT):  # one C loop over every money value
            return bool(sum(filter(None, _chain(parts)), _ZERO).is_finite())
    except (decimal.InvalidOperation, decimal.Overflow):
        return False


def _gather(objs: list[Any], plan: _MoneyMap, parts: list[Iterable[Any]]) -> None:
    """Append to ``parts`` an iterator over each money field of ``objs``, and recurse."""
    for _, get in plan.money:
        parts.append(map(get, objs))
    for _, get, child, many in plan.children:
        found: Iterable[Any] = filter(None, map(get, objs))
        kids = list(_chain(found)) if many else list(found)
        if kids:
            _gather(kids, _MONEY_MAPS[child], parts)  # type: ignore[arg-type]


def _what(amount: Decimal) -> str | None:
    """Why ``amount`` breaks the rule (``None`` when it does not)."""
    if amount.is_snan():
        return "sNaN"
    if amount.is_nan():
        return "NaN"
    if amount.is_infinite():
        return "-Infinity" if amount.is_signed() else "Infinity"
    if amount and amount.adjusted() >= MAX_EXPONENT:
        return f"a number of {amount.adjusted() + 1} digits before the point"
    return None


def _first_bad(value: Any, model: type[Any], at: str = "$") -> DecodeError:
    found = _search(value, model, at)
    if found is None:  # sums of in-range values that overflowed together: name the model
        return DecodeError(
            f"the money in {model.__name__} adds up past 10^{MAX_EXPONENT + 10}: "
            "not amounts this client accepts (the answer is refused; not retried)",
            field=model.__name__,
        )
    return found


def _search(value: Any, model: type[Any], at: str) -> DecodeError | None:
    plan = _MONEY_MAPS.get(model)
    if plan is None:
        return None
    for wire, get in plan.money:
        amount = get(value)
        if amount is not None and (why := _what(amount)) is not None:
            field = f"{model.__name__}.{wire}"
            return DecodeError(
                f"{field} is {why} (at {at}.{wire}): money must be a finite number below "
                f"10^{MAX_EXPONENT} (the answer is refused; not retried)",
                field=field,
            )
    for wire, get, child, many in plan.children:
        item = get(value)
        if item is None:
            continue
        for i, one in enumerate(item if many else [item]):
            where = f"{at}.{wire}[{i}]" if many else f"{at}.{wire}"
            found = _search(one, child, where)
            if found is not None:
                return found
    return None
