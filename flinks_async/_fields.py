"""What each model field takes, read once from the models' annotations: for the schema
check (:mod:`flinks_async._schema`), which walks an answer key by key against them.

:func:`spec_of` maps each Flinks key of a model to a :class:`Field` (its kind:
``decimal``, ``float``, ``int``, ``bool``, ``str``, a nested ``model`` or ``any``; and
whether it is a list); :func:`fits` says whether a JSON value is one the field takes as
it is, or losslessly (``"12.50"`` for money; never ``"NaN"``, ``"12,50"`` or ``true``).
"""

from __future__ import annotations

import dataclasses
import decimal
import types
import typing
from typing import Any

import msgspec

__all__ = ["Field", "fits", "spec_of"]


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """How a model field reads a JSON value."""

    attr: str
    kind: str  # "decimal", "float", "int", "bool", "str", "model", "any"
    model: type[Any] | None = None  # the nested model, for "model"
    many: bool = False  # a list of it


_SPECS: dict[type[Any], dict[str, Field]] = {}


def spec_of(model: type[Any]) -> dict[str, Field]:
    """``{Flinks key: Field}`` of a model (computed once per model)."""
    spec = _SPECS.get(model)
    if spec is None:
        spec = {}
        for f in msgspec.structs.fields(model):
            if f.encode_name.startswith("__flinks_"):
                continue  # .extra, a resolved .security: never on the wire
            spec[f.encode_name] = _field(f.name, f.type)
        _SPECS[model] = spec
    return spec


def _field(attr: str, tp: Any) -> Field:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        structs = [a for a in args if isinstance(a, type) and issubclass(a, msgspec.Struct)]
        if structs:  # str | Institution: a dict is walked as the model, the rest fits
            return Field(attr, "model" if len(args) == 1 else "any", structs[0])
        if len(args) == 1:
            return _field(attr, args[0])
        return Field(attr, "any")  # int | str ...: anything goes
    if typing.get_origin(tp) is list:
        inner = _field(attr, typing.get_args(tp)[0])
        return dataclasses.replace(inner, many=True)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return Field(attr, "model", tp)
    names = {decimal.Decimal: "decimal", float: "float", int: "int", bool: "bool", str: "str"}
    return Field(attr, names.get(tp, "any"))


def _lossless_number(text: str) -> bool:
    try:
        value = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        return False
    return value.is_finite()


#: the JSON types each kind takes as they are: what almost every value is (the fast path
#: of :func:`fits`; ``type(True)`` is ``bool``, never ``int``)
_TAKES: dict[str, tuple[type[Any], ...]] = {
    "decimal": (int, float, decimal.Decimal),
    "float": (int, float, decimal.Decimal),
    "int": (int,),
    "bool": (bool,),
    "str": (str,),
    "model": (dict,),
}
_NUMBER = (int, float, decimal.Decimal)


def fits(kind: str, value: Any) -> bool:
    """Whether a JSON value is one the model takes as it is (or losslessly)."""
    if value is None or kind == "any" or type(value) in _TAKES[kind]:
        return True
    if kind in ("decimal", "float"):
        return (isinstance(value, _NUMBER) and not isinstance(value, bool)) or (
            isinstance(value, str) and _lossless_number(value)
        )
    if kind == "int":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.strip().lstrip("-").isdigit()
        )
    if kind == "bool":  # as msgspec reads them
        return isinstance(value, bool) or value in ("true", "false", "True", "False", "1", "0")
    if kind == "str":
        return isinstance(value, str)
    return isinstance(value, dict)  # "model"
