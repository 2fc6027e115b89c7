"""Turning a 200 body into the value a call returns: :func:`make_decoder`.

A :class:`Decode` is called on a body (``decode(body)``: in one go) or awaited on a big
one (``await decode.in_slices(body)``: the same value, decoded in slices that let the
event loop run other tasks; see :mod:`flinks_async._slices`). The transport picks the
second for bodies of :data:`~flinks_async._slices.SLICE_FROM` bytes or more.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from ._errors import DecodeError
from ._models import AnyObject, decoder_for
from ._money import check_money
from ._schema import Unfit, data_probe, no_data, probe_has_data
from ._slices import Uncut, decode_in_slices

__all__ = ["BodyDecoder", "Decode", "make_decoder"]


class BodyDecoder(Protocol):
    """What a data call decodes its 200 with: a :class:`Decode`, or one wrapped with the
    schema check (:class:`~flinks_async._schema.Checked`)."""

    def __call__(self, body: bytes, /) -> Any:
        """``body`` decoded in one go."""

    async def in_slices(self, body: bytes, /) -> Any:
        """``body`` decoded in slices (the same value or error)."""


_DECODERS: dict[tuple[type[Any], bool], Decode] = {}


def make_decoder(model: type[Any], *, raw: bool) -> Decode:
    """The :class:`Decode` turning a 200 body into ``model`` (or, ``raw``, checking that it
    is one JSON object holding a data key and returning the bytes); anything else raises
    :class:`DecodeError`:

    * not JSON at all (an HTML or empty page): ``retryable=True``, the transport retries;
    * JSON that does not fit the model: :class:`~flinks_async._schema.Unfit` (not retried;
      :class:`~flinks_async._schema.SchemaCheck` repairs what it safely can);
    * JSON nested too deep to read (msgspec's recursion limit): not retried;
    * a money value that is not a finite number (:func:`~flinks_async._money.check_money`,
      ``.field`` names it): not retried;
    * none of the model's data keys (``model.__data_fields__``):
      :class:`~flinks_async.SchemaDriftError`, raw or not.

    One per (model, raw), shared: the transport adds the login, request and endpoint to a
    :class:`DecodeError` it catches.
    """
    decode = _DECODERS.get((model, raw))
    if decode is None:
        decode = _DECODERS[model, raw] = Decode(model, raw)
    return decode


class Decode:
    """A body's decoder for one model (see :func:`make_decoder`)."""

    __slots__ = ("_decoder", "_probe", "fields", "model", "raw", "what")

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
        """``body`` decoded in slices: the value (or error) of ``decode(body)``, with turns
        of the event loop in between."""
        done = await self.sliced(body)
        return self(body) if done is None else done[0]
