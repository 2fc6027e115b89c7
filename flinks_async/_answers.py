"""What an HTTP answer holds, for the transport.

* :func:`read_body`: the body, refused past ``max_response_bytes`` (counted after
  decompression) with :class:`ResponseTooLargeError`, each part taken from the client's
  body budget (:mod:`flinks_async._budget`) before it is held; a redirect is refused with
  :class:`InvalidRequestError` (credentials must not travel to another host).
* :func:`answer_error`: the typed :class:`APIError` of a non-200/202 answer, keyed on its
  FlinksCode, then on the HTTP status (:func:`~flinks_async._errors.api_error_for`); a
  body that is not JSON (an HTML error page) is named by its content type and size, never
  quoted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING

import aiohttp
import msgspec
from yarl import URL

from . import _slices
from ._budget import BodyBudget
from ._endpoints import ENDPOINTS
from ._enrich_calls import CUSTOM_ATTRIBUTES
from ._enrich_errors import enrich_error
from ._errors import (
    APIError,
    InvalidRequestError,
    MFARequiredError,
    ResponseTooLargeError,
    api_error_for,
)
from ._models import ErrorBody, decoder_for

if TYPE_CHECKING:
    from ._transport import Request

__all__ = ["Held", "answer_error", "join", "read_big", "read_body", "too_large"]

_ERROR_DECODER = decoder_for(ErrorBody)
#: the endpoints whose errors :func:`enrich_error` types (Enrich's, under the customer root)
_ENRICH = frozenset(
    row.flinks_name for row in ENDPOINTS.values() if row.route.root == "customer"
) | {CUSTOM_ATTRIBUTES.flinks_name}


class Held:
    """How many bytes of the budget one attempt's body holds."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0


def read_body(
    resp: aiohttp.ClientResponse, call: Request, read: Held, limit: int, budget: BodyBudget
) -> Awaitable[bytes]:
    """The body, refusing more than ``max_response_bytes`` (counted after decompression),
    each part taken from the budget (``read.size`` says how much is held). Not a coroutine
    of its own: a small body whose length is known, with room in the budget (the common
    case), is ``resp.read()`` itself, with no frame of ours for its awaits to resume
    through (a redirect or a length over the cap raises here)."""
    if resp.status in (301, 302, 303, 307, 308):
        location = resp.headers.get("Location", "")
        host = URL(location).host if location else None
        raise InvalidRequestError(
            f"unexpected redirect to {host or 'an unknown host'}; not followed",
            http_status=resp.status,
            login_id=call.login_id,
            request_id=call.request_id,
            endpoint=call.endpoint,
        )
    length = resp.content_length
    if length is None or "Content-Encoding" in resp.headers:
        return _read_chunks(resp, call, read, limit, budget)
    if length > limit:
        raise too_large(call, limit)
    if length >= _slices.SLICE_FROM or not budget.try_take(length):
        return _read_known(resp, length, read, budget)
    read.size = length
    return resp.read()


async def _read_known(
    resp: aiohttp.ClientResponse, size: int, read: Held, budget: BodyBudget
) -> bytes:
    """A body of a known ``size``: taken from the budget (waiting for room), then read."""
    if not read.size:
        await budget.take(size)
        read.size = size
    return await (read_big(resp, size) if size >= _slices.SLICE_FROM else resp.read())


async def _read_chunks(
    resp: aiohttp.ClientResponse, call: Request, read: Held, limit: int, budget: BodyBudget
) -> bytes:
    """A body of unknown length (or compressed): read part by part, each counted."""
    chunks: list[bytes] = []
    while chunk := await resp.content.readany():
        size = len(chunk)
        if read.size + size > limit:
            raise too_large(call, limit)
        if not budget.try_take(size, read.size):
            await budget.take(size, read.size)
        read.size += size
        chunks.append(chunk)
    return await join(chunks, read.size)


async def read_big(resp: aiohttp.ClientResponse, size: int) -> bytes:
    """A body of ``size`` bytes (its Content-Length, already taken from the budget), read
    as ``resp.read()`` would, but joined by :func:`join`."""
    chunks: list[bytes] = []
    while chunk := await resp.content.readany():
        chunks.append(chunk)
    return await join(chunks, size)


async def join(chunks: list[bytes], size: int) -> bytes:
    """``b"".join(chunks)``; from :data:`~flinks_async._slices.SLICE_FROM` bytes on, in a
    worker thread: ``bytes.join`` copies a big result with the GIL released, and a 50 MB
    copy into fresh memory holds the event loop for 40-70 ms otherwise."""
    if len(chunks) == 1:
        return chunks[0]
    if size < _slices.SLICE_FROM:
        return b"".join(chunks)
    return await asyncio.get_running_loop().run_in_executor(None, b"".join, chunks)


def too_large(call: Request, limit: int) -> ResponseTooLargeError:
    """:class:`ResponseTooLargeError` for ``call``."""
    return ResponseTooLargeError(
        f"response body over max_response_bytes={limit}",
        login_id=call.login_id,
        request_id=call.request_id,
        endpoint=call.endpoint,
    )


def answer_error(call: Request, status: int, headers: Mapping[str, str], body: bytes) -> APIError:
    """The typed error for a non-200/202 answer (keyed on FlinksCode, then status)."""
    code: str | None = None
    request_id = call.request_id
    challenges = None
    try:
        env = _ERROR_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        kind = headers.get("Content-Type", "").split(";")[0] or "no content type"
        message = f"HTTP {status} with a non-JSON body ({kind}, {len(body)} bytes)"
    else:
        code = env.flinks_code.strip().upper() if env.flinks_code else None
        message = (env.message or "")[:500] or f"HTTP {status}"
        request_id = env.request_id or request_id
        challenges = env.security_challenges
    error = api_error_for(code, status)(
        message,
        flinks_code=code,
        http_status=status,
        login_id=call.login_id,
        request_id=request_id,
        endpoint=call.endpoint,
    )
    if call.endpoint in _ENRICH:
        error = enrich_error(error)
    if isinstance(error, MFARequiredError):
        error.challenges = list(challenges or ())
        if error.message == f"HTTP {status}" and error.challenges:
            error.message = f"the institution asks {len(error.challenges)} MFA question(s)"
    return error
