"""Big answers decoded in slices, so that the event loop keeps running while they are.

msgspec decodes a 50 MB ``/Investments`` answer in about half a second, and holds the
event loop (and the GIL: a worker thread does not help) all that time: every other
request handler of a web app waits. So an answer of :data:`SLICE_FROM` bytes or more
(1 MiB) is decoded piece by piece, and the loop runs other tasks between pieces of about
:data:`PIECE_BYTES` (128 KiB, about 1.5 ms of decoding; :data:`RAW_PIECE_BYTES`, 2 MiB,
when only checking a ``raw=True`` body). The value is the one a decode in one go returns:
same models, Decimal money checked by the same rule, securities resolved.

How an answer is cut (:func:`decode_in_slices`), without any pass over the whole body:

1. The top-level object is read key by key. A member that is a list of models
   (``Accounts``, ``Securities``, an account's ``Transactions``...) is cut (2, 3); any other
   member is small and is skipped over by msgspec itself: decoding ``body[start:]`` as
   ``msgspec.Raw`` stops after the value with a "trailing characters (byte N)" error, and
   N is where the value ends (one pass over that value only).
2. A list of models that hold lists themselves (accounts) is read element by element, each
   element as in 1.
3. A list of leaf models (transactions, positions, securities) is cut after a ``}``
   followed by ``,`` or ``]`` about every :data:`PIECE_BYTES`, and ``[`` + piece + ``]`` is
   decoded as ``list[Model]``. A cut that falls inside a nested object or a string makes
   that text invalid JSON (its brackets cannot all close), so a piece that decodes is
   exactly whole elements; one that does not is tried again at the next such ``}``, at
   most :data:`MAX_MISCUTS` times.
4. The object without its list members (its shell) is decoded as the model, its money
   checked, and the decoded lists are set on it.

The slices only ever take an answer that decodes cleanly: anything else (a value that
does not fit its field, money that is not a finite number, no data key, a key given
twice, a key with an escape, a list that will not cut) raises :class:`Uncut`, and the
caller decodes the answer in one go as before, which gives the same value or the same
typed error (a :class:`~flinks_async.DecodeError`, a repair by the schema check).
Answers checked for schema drift (the first ones of a client, or all with
``strict_schema``/``keep_extra``) are decoded in one go too: that check reads the whole
answer generically.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import msgspec

from ._errors import DecodeError
from ._fields import spec_of
from ._models import Investments, resolve_security_ids
from ._money import check_money, money_fine

__all__ = [
    "MAX_MISCUTS",
    "PIECE_BYTES",
    "RAW_PIECE_BYTES",
    "SLICE_FROM",
    "Uncut",
    "data_probe",
    "decode_in_slices",
    "probe_has_data",
]

#: answers of at least this many bytes are decoded in slices (smaller ones in one go:
#: 1 MiB decodes in about 12 ms)
SLICE_FROM = 1 << 20
#: about this many bytes of a list are decoded between two turns of the event loop
PIECE_BYTES = 128 << 10
#: ...when a ``raw=True`` body is only checked (16x faster than decoding into models)
RAW_PIECE_BYTES = 2 << 20
#: failed cuts tolerated per piece before the answer is decoded in one go
MAX_MISCUTS = 16
#: a list of this many positions or transactions gets its securities resolved per turn
RESOLVE_BATCH = 5_000
#: the event loop gets a turn at least this often (seconds of decoding)
TURN_EVERY = 0.002

_WS = re.compile(rb"[ \t\n\r]*")
_KEY = re.compile(rb'"([^"\\]*)"[ \t\n\r]*:[ \t\n\r]*')
_CUT = re.compile(rb"}[ \t\n\r]*([,\]])")
_END = re.compile(rb"}[ \t\n\r]*\]")
_TRAILING = re.compile(r"trailing characters \(byte (\d+)\)")
_RAW = msgspec.json.Decoder(msgspec.Raw)
_LBRACE, _RBRACE, _LBRACKET, _RBRACKET, _COMMA = b"{}[],"
_LISTS: dict[type[Any], dict[str, tuple[str, type[Any], bool]]] = {}
_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


class Uncut(Exception):
    """This answer is not one the slices take: decode it in one go."""


def data_probe(model: type[Any]) -> type[msgspec.Struct]:
    """A struct of ``model``'s data keys only, each kept as ``msgspec.Raw``: decoding it
    checks a raw body holds at least one of them without building anything (in one go
    or, for a body with no data list, in slices)."""
    probe = _PROBES.get(model)
    if probe is None:
        wire = {f.name: f.encode_name for f in msgspec.structs.fields(model)}
        probe = _PROBES[model] = msgspec.defstruct(
            f"{model.__name__}Keys",
            [(wire[n], msgspec.Raw, _NULL) for n in model.__data_fields__],
            kw_only=True,
        )
    return probe


_PROBES: dict[type[Any], type[msgspec.Struct]] = {}
_NULL = msgspec.Raw(b"null")


def probe_has_data(probe: msgspec.Struct) -> bool:
    """Whether a decoded :func:`data_probe` holds a non-null data key."""
    for name in probe.__struct_fields__:
        raw = getattr(probe, name)
        if len(raw) != 4 or raw != _NULL:  # never bytes(raw): a copy of the whole array
            return True
    return False


def _lists_of(model: type[Any]) -> dict[str, tuple[str, type[Any], bool]]:
    """``{Flinks key: (attribute, element model, whether the element holds lists)}`` for
    each list-of-models field of ``model``."""
    found = _LISTS.get(model)
    if found is None:
        found = {}
        for key, field in spec_of(model).items():
            if field.many and field.kind == "model" and field.model is not None:
                nested = any(f.many and f.kind == "model" for f in spec_of(field.model).values())
                found[key] = (field.attr, field.model, nested)
        _LISTS[model] = found
    return found


def _data_fields(model: type[Any]) -> tuple[str, ...]:
    fields: tuple[str, ...] = getattr(model, "__data_fields__", ())
    return fields


def _decoder(tp: Any) -> msgspec.json.Decoder[Any]:
    dec = _DECODERS.get(tp)
    if dec is None:
        dec = _DECODERS[tp] = msgspec.json.Decoder(tp, strict=False)
    return dec


async def decode_in_slices(body: bytes, model: type[Any], *, raw: bool) -> tuple[Any, int]:
    """``body`` decoded as ``model`` in slices (see the module docstring), and how many
    positions and transactions name a security that is not listed. ``raw``: only check it
    is JSON holding one of the model's data keys; the value is then ``None``.

    Raises :class:`Uncut` when the answer is to be decoded in one go instead.
    """
    walk = _Walk(body, raw)
    p = walk.skip(0)
    if p >= len(body) or body[p] != _LBRACE:
        raise Uncut
    value, end = await walk.object(p, model, top=True)
    if walk.skip(end) != len(body):
        raise Uncut  # trailing text
    if raw:
        return None, 0
    dangling = 0
    if isinstance(value, Investments):
        dangling = await walk.resolve(value)
    return value, dangling


class _Walk:
    """One answer being read (see the module docstring)."""

    __slots__ = ("body", "last_turn", "piece_bytes", "raw", "view")

    def __init__(self, body: bytes, raw: bool) -> None:
        self.body = body
        self.view = memoryview(body)
        self.raw = raw
        self.piece_bytes = RAW_PIECE_BYTES if raw else PIECE_BYTES
        self.last_turn = time.perf_counter()

    def skip(self, p: int) -> int:
        """The first offset at or after ``p`` that is not JSON whitespace."""
        m = _WS.match(self.body, p)
        return m.end() if m is not None else p

    async def turn(self) -> None:
        """Let the event loop run other tasks, when this answer has held it long enough."""
        now = time.perf_counter()
        if now - self.last_turn >= TURN_EVERY:
            await asyncio.sleep(0)
            self.last_turn = time.perf_counter()

    def value_end(self, p: int) -> int:
        """Where the JSON value starting at ``p`` ends (msgspec skips over it)."""
        try:
            _RAW.decode(self.view[p:])
        except msgspec.DecodeError as exc:
            m = _TRAILING.search(str(exc))
            if m is not None:
                return p + int(m[1]) - 1  # msgspec counts the byte after the first one left
        raise Uncut  # the last value of the body, or not JSON: not an object's member

    async def object(self, p: int, model: type[Any], *, top: bool = False) -> tuple[Any, int]:
        """The object starting at ``p`` (a ``{``) as ``model``, and the offset after it."""
        body = self.body
        lists = _lists_of(model)
        members: list[bytes] = []
        decoded: dict[str, list[Any]] = {}
        seen: set[str] = set()
        p = self.skip(p + 1)
        end = -1
        if p < len(body) and body[p] == _RBRACE:
            end = p + 1
        while end < 0:
            m = _KEY.match(body, p)
            if m is None:
                raise Uncut  # an escape in a key, or not an object
            key = m[1].decode()
            if key in seen and key in lists:
                raise Uncut  # given twice: decoding in one go settles which one counts
            seen.add(key)
            v = m.end()
            if key in lists and v < len(body) and body[v] == _LBRACKET:
                _, element, nested = lists[key]
                decoded[key], v_end = await self.items(v, element, nested)
            else:
                v_end = self.value_end(v)
                members.append(body[m.start() : v_end])
            q = self.skip(v_end)
            c = body[q] if q < len(body) else -1
            if c == _COMMA:
                p = self.skip(q + 1)
            elif c == _RBRACE:
                end = q + 1
            else:
                raise Uncut
        if self.raw:
            if top and not any(lists[key][0] in _data_fields(model) for key in decoded):
                self.check_data(model, members)
            return None, end
        shell_text = b"{" + b",".join(members) + b"}"
        try:
            shell = _decoder(model).decode(shell_text)
            check_money(shell, model)  # its lists are not set yet: checked piece by piece
        except (msgspec.ValidationError, msgspec.DecodeError, DecodeError):
            raise Uncut from None
        for key, items in decoded.items():
            setattr(shell, lists[key][0], items)
        if top:
            fields = _data_fields(model)
            if fields and all(getattr(shell, f) is None for f in fields):
                raise Uncut  # no data: decoding in one go says so
        return shell, end

    def check_data(self, model: type[Any], members: list[bytes]) -> None:
        """A raw body with no data list: it must hold a non-null data key, as in one go."""
        if not _data_fields(model):
            return
        try:
            probe = _decoder(data_probe(model)).decode(b"{" + b",".join(members) + b"}")
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise Uncut from None
        if not probe_has_data(probe):
            raise Uncut

    async def items(self, p: int, model: type[Any], nested: bool) -> tuple[list[Any], int]:
        """The list whose ``[`` is at ``p``, and the offset after its ``]``: elements that
        hold lists one at a time (:meth:`object`), leaf elements a piece at a time."""
        items: list[Any] = []
        p = self.skip(p + 1)
        if p < len(self.body) and self.body[p] == _RBRACKET:
            return items, p + 1
        decoder = None  # built for leaf elements only (they are decoded a piece at a time)
        done = False
        while not done:
            if p >= len(self.body) or self.body[p] != _LBRACE:
                raise Uncut
            if nested:
                item, end = await self.object(p, model)
                items.append(item)
            else:
                if decoder is None:
                    decoder = _RAW if self.raw else _decoder(list[model])  # type: ignore[valid-type]
                end = self.piece(p, model, decoder, items)
            p, done = self.after(end)
            await self.turn()
        return items, p

    def after(self, end: int) -> tuple[int, bool]:
        """After an element ending at ``end``: where the next one starts, or the offset
        after the list's ``]`` (and ``True``)."""
        q = self.skip(end)
        c = self.body[q] if q < len(self.body) else -1
        if c == _COMMA:
            return self.skip(q + 1), False
        if c == _RBRACKET:
            return q + 1, True
        raise Uncut

    def piece(
        self, p: int, model: type[Any], decoder: msgspec.json.Decoder[Any], items: list[Any]
    ) -> int:
        """Decode the elements from ``p`` up to a cut about :data:`PIECE_BYTES` on into
        ``items``; return where the last one ends."""
        body = self.body
        # cut after the first "}," or "}]" past the target; but the list may end before it:
        # try each "}]" up to there first
        cut = _CUT.search(body, p + self.piece_bytes)
        limit = cut.end() if cut is not None else len(body)
        end = _END.search(body, p, limit)
        for _ in range(MAX_MISCUTS):
            if end is not None:
                at = end.start()
            elif cut is not None:
                at = cut.start()
            else:
                raise Uncut
            try:
                got: Any = decoder.decode(b"".join((b"[", self.view[p : at + 1], b"]")))
            except msgspec.ValidationError:
                raise Uncut from None  # whole elements that do not fit: one go repairs
            except msgspec.DecodeError:  # cut inside an element: try the next place
                if end is not None:
                    end = _END.search(body, at + 1, limit)
                elif cut is not None:
                    cut = _CUT.search(body, at + 1)
                continue
            if not self.raw:
                if not money_fine(got, model):
                    raise Uncut  # decoding in one go names the field
                items.extend(got)
            return at + 1
        raise Uncut

    async def resolve(self, value: Investments) -> int:
        """Set ``.security`` on every position and transaction, as decoding in one go does
        (``Investments.resolve_securities``), a batch at a time; return the dangling count."""
        index = {s.id: s for s in value.securities or () if s.id is not None}
        dangling = 0
        for account in value.accounts or ():
            for items in (account.positions, account.transactions):
                for i in range(0, len(items or ()), RESOLVE_BATCH):
                    dangling += resolve_security_ids(index, items[i : i + RESOLVE_BATCH])  # type: ignore[index]
                    await self.turn()
        return dangling
