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

Leniency (``strict_schema=False``, the default): one odd value must not cost the whole
answer, and a complete ``200`` is never re-sent for its shape (the same bytes would fail
again). When the typed decode fails on a value (a ``Holder`` sent as a string, a
``Balance`` of ``"N/A"``), the answer is read generically once more and every value that
does not fit its field is moved out of the way: a key's value goes to the ``.extra`` dict
of the object holding it (``account.extra["Holder"] == "Jane"``), a list item that does
not fit goes to ``.extra[key]`` as a list of such items, and the field reads ``None`` /
loses that item. The rest of the answer decodes as usual, each moved value is reported as
drift (``"Account", "'Holder' (str)"``), and nothing Flinks sent is dropped. With
``strict_schema=True`` such an answer raises :class:`~flinks_async.SchemaDriftError`.

Always, raw or not: a ``200`` holding none of the endpoint's data keys (a model's
``__data_fields__``: ``Accounts``/``Securities``/``Value``/``Cash`` for ``/Investments``)
raises :class:`~flinks_async.SchemaDriftError` (:func:`~flinks_async._decoding.no_data`)
instead of passing for an empty success. An ``/Investments`` position or transaction
whose ``SecurityId`` names no listed security is reported as drift (``"Position",
"'SecurityId' (not in Securities)"``) and its ``.security`` is ``None``; never an
exception, even when strict.

Cost and when it runs: the generic read and the walk cost 6-9x the typed decode
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
import decimal
import logging
import re
import threading
from typing import Any

import msgspec

from ._decoding import ModelDecoder, Unfit, no_data
from ._errors import DecodeError, SchemaDriftError
from ._events import Event, EventHook, dispatch, scoped_hooks
from ._fields import fits, spec_of
from ._money import MAX_EXPONENT, check_money

__all__ = [
    "SAMPLE",
    "SAMPLE_MAX_BYTES",
    "CheckedDecoder",
    "SchemaCheck",
    "dump",
]

log = logging.getLogger("flinks_async")

#: Answers of each model checked per client when neither strict_schema nor keep_extra.
SAMPLE = 20
#: ...of at most this many bytes: the second read of a 50 MB answer would hold the event
#: loop for about a second (6-9x a typed decode), and a small answer shows the same schema.
SAMPLE_MAX_BYTES = 2 * 1024 * 1024

#: at most this many path-by-path repairs of one answer after the field walk (values the
#: walk cannot judge, e.g. a number where ``str | Institution`` is expected)
MAX_REPAIRS = 50
#: where the moved values go in the generic object: the wire name of ``_Model.extra``
_EXTRA = "__flinks_extra__"

# generic reads keep every number exact (money in ``.extra`` too)
_GENERIC = msgspec.json.Decoder(float_hook=decimal.Decimal)
_PATH = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


_WARNED: set[tuple[str, str]] = set()  # (model, key): logged once per process
_WARNED_LOCK = threading.Lock()


def _money_misfit(body: bytes, model: type[Any]) -> DecodeError | None:
    """The error for the first money field of ``body`` that holds something other than a
    number or ``null`` (``"12,50"``, ``true``, ``"N/A"``), or ``None``: such a value is
    never set aside like other misfits (see :mod:`flinks_async._money`)."""
    try:
        generic = _GENERIC.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return _find_money_misfit(generic, model, "$") if isinstance(generic, dict) else None


def _find_money_misfit(obj: dict[str, Any], model: type[Any], at: str) -> DecodeError | None:
    spec = spec_of(model)
    for key, item in obj.items():
        field = spec.get(key)
        if field is None or (field.many and not isinstance(item, list)):
            continue
        items: list[Any] = item if field.many else [item]
        for i, one in enumerate(items):
            where = f"{at}.{key}[{i}]" if field.many else f"{at}.{key}"
            if field.kind == "decimal" and not fits("decimal", one):
                sent = f"a {type(one).__name__}" if not isinstance(one, bool) else str(one).lower()
                name = f"{model.__name__}.{key}"
                return DecodeError(
                    f"{name} is {sent}, not a number (at {where}): money must be a finite "
                    f"number below 10^{MAX_EXPONENT} or null (the answer is refused; "
                    "not retried)",
                    field=name,
                )
            if field.model is not None and isinstance(one, dict):
                found = _find_money_misfit(one, field.model, where)
                if found is not None:
                    return found
    return None


class SchemaCheck:
    """One client's drift checking and bookkeeping (see the module docstring)."""

    def __init__(self, *, strict: bool, keep_extra: bool, hooks: tuple[EventHook, ...]) -> None:
        self.strict = strict
        self.keep_extra = keep_extra
        self._check_every = strict or keep_extra  # else a sample (see the module docstring)
        self.hooks = hooks
        self.found: collections.defaultdict[str, collections.Counter[str]] = (
            collections.defaultdict(collections.Counter)
        )
        self._checked_count: collections.Counter[type[Any]] = collections.Counter()

    def summary(self) -> dict[str, dict[str, int]]:
        """``{model: {key or "key (type)": times seen}}``."""
        return {model: dict(keys) for model, keys in self.found.items()}

    def wrap(
        self,
        decode: ModelDecoder,
        model: type[Any],
        endpoint: str,
        login_id: str | None,
    ) -> CheckedDecoder:
        """``decode`` plus the check (when this answer is to be checked), the repair of an
        answer that does not fit, and the check of ``SecurityId`` references."""
        return CheckedDecoder(self, decode, model, endpoint, login_id)

    def _repair(
        self, body: bytes, model: type[Any], unfit: Unfit, endpoint: str, login_id: str | None
    ) -> Any:
        """Decode an answer the typed decode refused, moving each value that does not fit
        into its object's ``.extra`` (see the module docstring). Already reported by
        ``_check``; raises ``unfit`` when the answer cannot be mended."""
        generic = _GENERIC.decode(body)
        if not isinstance(generic, dict):
            raise unfit
        self._walk(generic, model, None, [], fix=True)
        for _ in range(MAX_REPAIRS):
            try:
                value = msgspec.convert(generic, model, strict=False)
            except msgspec.ValidationError as exc:
                moved = _move_at(generic, model, str(exc))
                if moved is None:
                    raise unfit from None
                self._report([moved], endpoint, login_id)
                continue
            fields = getattr(model, "__data_fields__", ())
            if fields and all(getattr(value, f) is None for f in fields):
                raise no_data(model, body)
            check_money(value, model)
            return value
        raise unfit

    def _references(self, value: Any, endpoint: str, login_id: str | None) -> None:
        """Report ``SecurityId`` values naming no listed security, and what a model built
        by hand kept aside (an Enrich card's breakdown: ``kept_aside()``); never raises."""
        kept = getattr(value, "kept_aside", None)
        if kept is not None and (found := kept()):
            self._report(found, endpoint, login_id)
        dangling = getattr(value, "dangling_security_ids", None)
        if dangling is not None:
            ids = dangling()
            if ids:
                self._report(
                    [("Investments", "'SecurityId' (not in Securities)")] * len(ids),
                    endpoint,
                    login_id,
                )

    def _check(
        self, body: bytes, model: type[Any], value: Any, endpoint: str, login_id: str | None
    ) -> list[tuple[str, str]]:
        try:
            generic = _GENERIC.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return []  # not JSON at all (or nested past reason): the DecodeError says so
        drift: list[tuple[str, str]] = []
        if isinstance(generic, dict):
            self._walk(generic, model, value, drift)
        self._report(drift, endpoint, login_id)
        return drift

    def _report(self, drift: list[tuple[str, str]], endpoint: str, login_id: str | None) -> None:
        """Log, count and emit findings: one log line per process and one event per answer
        for each distinct (model, key); counted as often as it occurs."""
        hooked = bool(self.hooks or scoped_hooks.get())
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

    def _walk(
        self,
        obj: dict[str, Any],
        model: type[Any],
        value: Any,
        drift: list[tuple[str, str]],
        *,
        fix: bool = False,
    ) -> None:
        """Compare ``obj`` (generic JSON) with ``model``, appending findings to ``drift``.
        ``fix``: also move each value that does not fit into ``obj``'s extra dict (and, with
        keep_extra, the unknown keys), for :meth:`_repair`."""
        spec = spec_of(model)
        name = model.__name__
        extra: dict[str, Any] | None = None
        for key, item in list(obj.items()):
            field = spec.get(key)
            if field is None:
                if key == _EXTRA:
                    continue
                drift.append((name, repr(key)))
                if self.keep_extra:
                    if fix:
                        obj.setdefault(_EXTRA, {})[key] = item
                    else:
                        extra = extra if extra is not None else {}
                        extra[key] = item
                continue
            if field.many and not isinstance(item, list) and item is not None:
                drift.append((name, f"{key!r} (not a list)"))
                if fix:
                    obj.setdefault(_EXTRA, {})[key] = obj.pop(key)
                continue
            if field.many:
                items = item or []
                misfits = [one for one in items if not fits(field.kind, one)]
            else:  # most keys: no list built to judge one value
                items = [item]
                misfits = [] if fits(field.kind, item) else items
            if misfits:
                drift.append((name, f"{key!r} ({type(misfits[0]).__name__})"))
                if fix:
                    if field.many:
                        items = obj[key] = [one for one in items if fits(field.kind, one)]
                        obj.setdefault(_EXTRA, {})[key] = misfits
                    else:
                        obj.setdefault(_EXTRA, {})[key] = obj.pop(key)
                        continue
            if field.model is not None:
                child = getattr(value, field.attr, None) if value is not None else None
                children = child if field.many and isinstance(child, list) else [child]
                for i, one in enumerate(items):
                    if isinstance(one, dict):
                        sub = children[i] if i < len(children) else None
                        self._walk(one, field.model, sub, drift, fix=fix)
        if extra is not None and isinstance(value, msgspec.Struct) and hasattr(value, "extra"):
            value.extra = {**(value.extra or {}), **extra}


class CheckedDecoder:
    """A :class:`~flinks_async._decoding.Decoder` for one call: a
    :class:`~flinks_async._decoding.ModelDecoder` with the client's schema check (see
    :meth:`SchemaCheck.wrap`)."""

    __slots__ = ("_decode", "_schema", "endpoint", "login_id", "model")

    def __init__(
        self,
        schema: SchemaCheck,
        decode: ModelDecoder,
        model: type[Any],
        endpoint: str,
        login_id: str | None,
    ) -> None:
        self._schema = schema
        self._decode = decode
        self.model = model
        self.endpoint = endpoint
        self.login_id = login_id

    def _sampled(self, body: bytes) -> bool:
        schema = self._schema
        return schema._check_every or (
            schema._checked_count[self.model] < SAMPLE and len(body) <= SAMPLE_MAX_BYTES
        )

    async def in_slices(self, body: bytes) -> Any:
        """``body`` decoded in slices (:mod:`flinks_async._slices`), unless this answer is
        to be checked for drift (the check reads it whole: then in one go, as is any answer
        the slices do not take); the same value or error as ``self(body)``."""
        if self._sampled(body):
            return self(body)
        done = await self._decode.sliced(body)
        if done is None:
            return self(body)
        value, dangling = done
        if dangling:
            self._schema._references(value, self.endpoint, self.login_id)
        return value

    def __call__(self, body: bytes) -> Any:
        schema, model, endpoint, login_id = self._schema, self.model, self.endpoint, self.login_id
        sampled = self._sampled(body)
        try:
            value = self._decode(body)
        except Unfit as exc:
            money = _money_misfit(body, model)
            if money is not None:
                raise money from None  # money is a number or refused, whatever the settings
            drift = schema._check(body, model, None, endpoint, login_id)
            if schema.strict:
                raise SchemaDriftError(f"{exc.message} (strict_schema=True)", drift=drift) from None
            value = schema._repair(body, model, exc, endpoint, login_id)
            schema._references(value, endpoint, login_id)
            return value
        except DecodeError as exc:
            if exc.field is None and not exc.retryable:  # JSON: report why, then fail
                schema._check(body, model, None, endpoint, login_id)
            raise
        if sampled:
            schema._checked_count[model] += 1
            drift = schema._check(body, model, value, endpoint, login_id)
            if drift and schema.strict:
                model_name, key = drift[0]
                raise SchemaDriftError(
                    f"{model_name} has {key}, which the client does not know "
                    f"({len(drift)} finding(s) in this answer; strict_schema=True)",
                    drift=drift,
                )
        schema._references(value, endpoint, login_id)
        return value


def _move_at(generic: dict[str, Any], model: type[Any], message: str) -> tuple[str, str] | None:
    """Move the value msgspec's error ``message`` points at (``... - at `$.A[0].B```) into
    its object's extra dict; return the finding, or None when there is no such path."""
    if "- at `$" not in message:
        return None
    at = message.rpartition("- at `$")[2].rstrip("`")
    steps: list[str | int] = [k if k else int(i) for k, i in _PATH.findall(at)]
    if not steps:
        return None
    node: Any = generic
    owner: dict[str, Any] | None = None  # the object holding the list being walked
    key: str | None = None
    current, owner_model = model, model
    for step in steps[:-1]:
        if isinstance(step, str):
            if not isinstance(node, dict) or step not in node:
                return None
            owner, key, node, owner_model = node, step, node[step], current
            field = spec_of(current).get(step)
            current = field.model if field is not None and field.model is not None else current
        else:
            if not isinstance(node, list) or step >= len(node):
                return None
            node = node[step]
    last = steps[-1]
    if isinstance(last, str):
        if not isinstance(node, dict) or last not in node:
            return None
        item = node.pop(last)
        node.setdefault(_EXTRA, {})[last] = item
        return current.__name__, f"{last!r} ({type(item).__name__})"
    if not isinstance(node, list) or last >= len(node) or owner is None or key is None:
        return None
    item = node.pop(last)
    owner.setdefault(_EXTRA, {}).setdefault(key, []).append(item)
    return owner_model.__name__, f"{key!r} ({type(item).__name__})"


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
            if item is None or f.encode_name.startswith("__flinks_"):
                continue  # .extra is merged below; a resolved .security is not Flinks' key
            out[f.encode_name] = _plain(item)
        out.update(getattr(value, "extra", None) or {})
        return out
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
