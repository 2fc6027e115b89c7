"""Turning a 200 body into the value a call returns: the one decode path.

* :class:`Decoder`: what a call decodes its 200 with. Called on a body (``decoder(body)``:
  in one go) or awaited on a big one (``await decoder.in_slices(body)``: the same value,
  decoded in slices that let the event loop run other tasks; see
  :mod:`flinks_async._slices`).
* :class:`ModelDecoder`: the decoder of one model (``ModelDecoder.of(model, raw=...)``,
  one per (model, raw), shared); :class:`~flinks_async._schema.CheckedDecoder` wraps it
  with the client's schema check.
* :func:`decode_answer`: the one step every 200 goes through, whether it comes from a
  call (the transport), a run shared between processes or a pushed webhook: it picks one
  go or slices (bodies of :data:`~flinks_async._slices.SLICE_FROM` bytes or more are
  sliced) and fills in the :class:`DecodeError`'s context (login, endpoint, request id,
  status, content type).

Imports go one way: :mod:`~flinks_async._schema` uses this module, this module uses
:mod:`~flinks_async._slices`, never back.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from . import _slices
from ._errors import DecodeError, SchemaDriftError
from ._fields import spec_of
from ._models import AnyObject, decoder_for
from ._money import check_money
from ._slices import Uncut, data_probe, decode_in_slices, probe_has_data

__all__ = ["Decoder", "ModelDecoder", "Unfit", "decode_answer", "no_data"]

# generic reads keep every number exact
_GENERIC = msgspec.json.Decoder(float_hook=decimal.Decimal)


class Decoder(Protocol):
    """What a call decodes its 200 with: a :class:`ModelDecoder`, one wrapped with the
    schema check (:class:`~flinks_async._schema.CheckedDecoder`), or any object with these
    two methods."""

    def __call__(self, body: bytes, /) -> Any:
        """``body`` decoded in one go."""

    async def in_slices(self, body: bytes, /) -> Any:
        """``body`` decoded in slices (the same value or error)."""


async def decode_answer(
    decoder: Decoder,
    body: bytes,
    *,
    login_id: str | None,
    endpoint: str,
    request_id: str | None,
    http_status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """``body`` decoded by ``decoder``: in one go, or in slices from
    :data:`~flinks_async._slices.SLICE_FROM` bytes on. A :class:`DecodeError` is raised
    with the call's context filled in: ``login_id``, ``endpoint``, ``request_id``,
    ``http_status`` (``None`` for a pushed webhook) and the content type of ``headers``
    (when the body came with some)."""
    try:
        if len(body) >= _slices.SLICE_FROM:
            return await decoder.in_slices(body)
        return decoder(body)
    except DecodeError as exc:
        exc.login_id, exc.endpoint, exc.request_id = login_id, endpoint, request_id
        exc.http_status = http_status
        if headers is not None:
            exc.content_type = headers.get("Content-Type", "")
        raise


class Unfit(DecodeError):
    """A complete JSON answer that the typed decode refused (a value of the wrong type);
    :meth:`~flinks_async._schema.SchemaCheck.wrap` repairs it unless strict. Not retried."""


def no_data(model: type[Any], body: bytes) -> SchemaDriftError:
    """The error for a 200 holding none of ``model``'s data keys (null counts as absent)."""
    wire = {f.name: f.encode_name for f in msgspec.structs.fields(model)}
    expected = [wire[n] for n in model.__data_fields__]
    try:
        generic = _GENERIC.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        generic = None
    known = set(spec_of(model))
    keys = [k for k in generic if k not in known] if isinstance(generic, dict) else []
    found = ", ".join(repr(k) for k in keys[:10]) or "no other key"
    return SchemaDriftError(
        f"the answer holds none of {', '.join(expected)} ({found}): not an empty "
        f"{model.__name__}, a shape this client does not know",
        drift=[(model.__name__, repr(k)) for k in keys]
        or [(model.__name__, f"none of {', '.join(expected)}")],
    )


_SHARED: dict[tuple[type[Any], bool], ModelDecoder] = {}


class ModelDecoder:
    """The :class:`Decoder` turning a 200 body into one model (or, ``raw``, checking that
    it is one JSON object holding a data key and returning the bytes); anything else raises
    :class:`DecodeError`:

    * not JSON at all (an HTML or empty page): ``retryable=True``, the transport retries;
    * JSON that does not fit the model: :class:`Unfit` (not retried;
      :class:`~flinks_async._schema.SchemaCheck` repairs what it safely can);
    * JSON nested too deep to read (msgspec's recursion limit): not retried;
    * a money value that is not a finite number (:func:`~flinks_async._money.check_money`,
      ``.field`` names it): not retried;
    * none of the model's data keys (``model.__data_fields__``):
      :class:`~flinks_async.SchemaDriftError`, raw or not.

    Get one with :meth:`of` (one per (model, raw), shared): :func:`decode_answer` adds the
    login, request and endpoint to the :class:`DecodeError`.
    """

    __slots__ = ("_decoder", "_probe", "fields", "model", "raw", "what")

    @classmethod
    def of(cls, model: type[Any], *, raw: bool) -> ModelDecoder:
        """The shared decoder of ``model`` (``raw``: check, return the bytes)."""
        decoder = _SHARED.get((model, raw))
        if decoder is None:
            decoder = _SHARED[model, raw] = cls(model, raw)
        return decoder

    def __init__(self, model: type[Any], raw: bool) -> None:
        self.model = model
        self.raw = raw
        self.fields: tuple[str, ...] = getattr(model, "__data_fields__", ())
        self._probe = data_probe(model) if raw and self.fields else AnyObject
        self._decoder = decoder_for(self._probe if raw else model)
        self.what = "a JSON object" if raw else model.__name__

    def __call__(self, body: bytes) -> Any:
        """``body`` decoded in one go."""
        what_model = self.what
        try:
            value = self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise Unfit(
                f"the answer does not fit {what_model} ({len(body)} bytes): {exc}"
            ) from None
        except RecursionError:
            raise DecodeError(
                f"the answer is JSON nested too deep to read as {what_model} "
                f"({len(body)} bytes): no Flinks answer is (not retried)"
            ) from None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            head = body[:16].lstrip()
            page = not head.startswith((b"{", b"[", b'"')) and not head[:1].isdigit()
            low = head.lower()
            what = "an HTML page" if low.startswith((b"<!doctype", b"<html")) else "not valid"
            raise DecodeError(
                f"the answer is {what} as {what_model} ({len(body)} bytes): {exc}",
                retryable=page,
            ) from None
        fields = self.fields
        if self.raw:
            if fields and not probe_has_data(value):
                raise no_data(self.model, body)
            return body
        for name in fields:  # a loop, not all(<generator>): this runs for every answer
            if getattr(value, name) is not None:
                break
        else:
            if fields:
                raise no_data(self.model, body)
        check_money(value, self.model)
        return value

    async def sliced(self, body: bytes) -> tuple[Any, int] | None:
        """``body`` decoded in slices, and the count of dangling ``SecurityId``\\s; ``None``
        when it is to be decoded in one go instead (see :mod:`flinks_async._slices`)."""
        try:
            value, dangling = await decode_in_slices(body, self.model, raw=self.raw)
        except Uncut:
            return None
        return (body if self.raw else value), dangling

    async def in_slices(self, body: bytes) -> Any:
        """``body`` decoded in slices: the value (or error) of ``self(body)``, with turns
        of the event loop in between."""
        done = await self.sliced(body)
        return self(body) if done is None else done[0]
