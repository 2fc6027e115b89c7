"""Schema drift: what Flinks sent that the models do not map, made visible.

msgspec drops the keys a model does not declare, which keeps decoding fast and never
breaks on a new Flinks field, but would also hide a renamed or added field: users would
silently get ``None``. So the client also reads answers generically and compares them
with the models (:class:`SchemaCheck`):

* **unknown keys**: a key a model does not declare (added or renamed by Flinks);
* **changed types**: a value the model cannot take as it is. A number sent as a string
  is accepted when the string is a lossless number (``"1234.50"`` for money) and
  reported otherwise (``"N/A"``: the answer then fails to decode, with the field's path).
  ``null`` is accepted everywhere (every field is optional) and never reported.

Each finding is logged once per process at WARNING (model and key, never the value),
emitted as a ``schema_drift`` :class:`~flinks_async.Event`, and counted in
``client.schema_drift`` (``{"Position": {"NewField": 3}}``). With
``FlinksClient(strict_schema=True)`` an answer with drift raises
:class:`~flinks_async.SchemaDriftError` instead (never retried: the same bytes would fail
again), for integrators' CI.

Cost and when it runs: the generic read and the walk cost 5-9x the typed decode
(``benchmarks/decoding.py``). So by default only the first :data:`SAMPLE` answers of each
model per client are checked, and only those up to :data:`SAMPLE_MAX_BYTES` (drift is a
property of Flinks' schema, not of one answer, and a small answer shows it as well as a
big one); every answer is with ``strict_schema=True`` or ``keep_extra=True``.
``keep_extra=True`` also stores each object's unknown keys on its model as ``.extra``
(a dict; ``None`` otherwise), so ``position.extra["NewField"]`` works, and :func:`dump`
re-encodes a typed value with them, losing no key and no digit.
"""

from __future__ import annotations

import collections
import dataclasses
import decimal
import logging
import threading
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from ._errors import DecodeError, SchemaDriftError
from ._events import Event, EventHook, dispatch, scoped_hooks

__all__ = ["SAMPLE", "SAMPLE_MAX_BYTES", "SchemaCheck", "dump"]

log = logging.getLogger("flinks_async")

#: Answers of each model checked per client when neither strict_schema nor keep_extra.
SAMPLE = 20
#: ...of at most this many bytes: the second read of a 50 MB answer would hold the event
#: loop for about a second (5-9x a typed decode), and a small answer shows the same schema.
SAMPLE_MAX_BYTES = 2 * 1024 * 1024

_WARNED: set[tuple[str, str]] = set()  # (model, key): logged once per process
_WARNED_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    attr: str
    kind: str  # "decimal", "float", "int", "bool", "str", "model", "any"
    model: type[Any] | None = None  # the nested model, for "model"
    many: bool = False  # a list of it


_SPECS: dict[type[Any], dict[str, _Field]] = {}


def _spec(model: type[Any]) -> dict[str, _Field]:
    """``{Flinks key: _Field}`` of a model (computed once per model)."""
    spec = _SPECS.get(model)
    if spec is None:
        spec = {}
        for f in msgspec.structs.fields(model):
            if f.name == "extra":
                continue
            spec[f.encode_name] = _field(f.name, f.type)
        _SPECS[model] = spec
    return spec


def _field(attr: str, tp: Any) -> _Field:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        structs = [a for a in args if isinstance(a, type) and issubclass(a, msgspec.Struct)]
        if structs:  # str | Institution: a dict is walked as the model, the rest fits
            return _Field(attr, "model" if len(args) == 1 else "any", structs[0])
        if len(args) == 1:
            return _field(attr, args[0])
        return _Field(attr, "any")  # int | str ...: anything goes
    if typing.get_origin(tp) is list:
        inner = _field(attr, typing.get_args(tp)[0])
        return dataclasses.replace(inner, many=True)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _Field(attr, "model", tp)
    names = {decimal.Decimal: "decimal", float: "float", int: "int", bool: "bool", str: "str"}
    return _Field(attr, names.get(tp, "any"))


def _lossless_number(text: str) -> bool:
    try:
        value = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        return False
    return value.is_finite()


def _fits(kind: str, value: Any) -> bool:
    """Whether a JSON value is one the model takes as it is (or losslessly)."""
    if value is None or kind == "any":
        return True
    if kind in ("decimal", "float"):
        return (isinstance(value, int | float) and not isinstance(value, bool)) or (
            isinstance(value, str) and _lossless_number(value)
        )
    if kind == "int":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.strip().lstrip("-").isdigit()
        )
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    return isinstance(value, dict)  # "model"


class SchemaCheck:
    """One client's drift checking and bookkeeping (see the module docstring)."""

    def __init__(self, *, strict: bool, keep_extra: bool, hooks: tuple[EventHook, ...]) -> None:
        self.strict = strict
        self.keep_extra = keep_extra
        self.hooks = hooks
        self.found: collections.defaultdict[str, collections.Counter[str]] = (
            collections.defaultdict(collections.Counter)
        )
        self._checked: collections.Counter[type[Any]] = collections.Counter()

    def summary(self) -> dict[str, dict[str, int]]:
        """``{model: {key or "key (type)": times seen}}``."""
        return {model: dict(keys) for model, keys in self.found.items()}

    def wrap(
        self,
        decode: Callable[[bytes], Any],
        model: type[Any],
        endpoint: str,
        login_id: str | None,
    ) -> Callable[[bytes], Any]:
        """``decode`` plus the check, when this answer is to be checked."""

        def checked(body: bytes) -> Any:
            if not (
                self.strict
                or self.keep_extra
                or (self._checked[model] < SAMPLE and len(body) <= SAMPLE_MAX_BYTES)
            ):
                return decode(body)
            try:
                value = decode(body)
            except DecodeError:
                self._check(body, model, None, endpoint, login_id)  # report why, then fail
                raise
            self._checked[model] += 1
            drift = self._check(body, model, value, endpoint, login_id)
            if drift and self.strict:
                model_name, key = drift[0]
                raise SchemaDriftError(
                    f"{model_name} has {key}, which the client does not know "
                    f"({len(drift)} finding(s) in this answer; strict_schema=True)",
                    drift=drift,
                )
            return value

        return checked

    def _check(
        self, body: bytes, model: type[Any], value: Any, endpoint: str, login_id: str | None
    ) -> list[tuple[str, str]]:
        try:
            generic = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return []  # not JSON at all: the DecodeError says so
        drift: list[tuple[str, str]] = []
        if isinstance(generic, dict):
            self._walk(generic, model, value, drift)
        hooked = bool(self.hooks or scoped_hooks.get())
        # one log line and one event per distinct key and answer: a key renamed in every
        # position of a big answer is one finding, counted as often as it occurs
        for (model_name, key), times in collections.Counter(drift).items():
            self.found[model_name][key] += times
            with _WARNED_LOCK:
                first = (model_name, key) not in _WARNED
                _WARNED.add((model_name, key))
            if first:
                log.warning(
                    "schema drift: %s has %s, which flinks-async does not map (logged once "
                    "per process; see client.schema_drift)",
                    model_name,
                    key,
                    extra={"flinks_endpoint": endpoint, "flinks_drift": f"{model_name}.{key}"},
                )
            if hooked:
                dispatch(
                    self.hooks,
                    Event("schema_drift", endpoint, login_id, detail=f"{model_name}.{key}"),
                )
        return drift

    def _walk(
        self, obj: dict[str, Any], model: type[Any], value: Any, drift: list[tuple[str, str]]
    ) -> None:
        spec = _spec(model)
        name = model.__name__
        extra: dict[str, Any] | None = None
        for key, item in obj.items():
            field = spec.get(key)
            if field is None:
                drift.append((name, repr(key)))
                if self.keep_extra:
                    extra = extra if extra is not None else {}
                    extra[key] = item
                continue
            items = item if field.many and isinstance(item, list) else [item]
            if field.many and not isinstance(item, list) and item is not None:
                drift.append((name, f"{key!r} (not a list)"))
                continue
            for one in items:
                if not _fits(field.kind, one):
                    drift.append((name, f"{key!r} ({type(one).__name__})"))
                    break
            if field.model is not None:
                child = getattr(value, field.attr, None) if value is not None else None
                children = child if field.many and isinstance(child, list) else [child]
                for i, one in enumerate(items):
                    if isinstance(one, dict):
                        sub = children[i] if i < len(children) else None
                        self._walk(one, field.model, sub, drift)
        if extra is not None and isinstance(value, msgspec.Struct) and hasattr(value, "extra"):
            value.extra = extra


def dump(value: Any) -> bytes:
    """JSON of a decoded model, with its ``.extra`` keys (``keep_extra=True``) merged back
    in and money as the exact numbers it was decoded from; ``None`` fields are left out
    (a field Flinks sent as ``null`` and one it omitted read the same)."""
    return _ENCODER.encode(_plain(value))


_ENCODER = msgspec.json.Encoder(decimal_format="number")


def _plain(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        for f in msgspec.structs.fields(value):
            item = getattr(value, f.name)
            if f.name == "extra" or item is None:
                continue
            out[f.encode_name] = _plain(item)
        out.update(getattr(value, "extra", None) or {})
        return out
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
