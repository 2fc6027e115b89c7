"""Authorize: a loginId exchanged for a session (``POST /Authorize``, cached mode).

* :func:`check_login_id`: a login id is a GUID, or :class:`InvalidLoginIdError` before any
  request.
* :class:`Authorizer`: ``POST /Authorize`` with ``{"LoginId", "MostRecentCached": true}``;
  the answer's ``RequestId`` opens the session the data call then uses. With a secret
  key, each Authorize first mints a single-use token (``POST /GenerateAuthorizeToken``
  with ``flinks-auth-key: <secret>``) and sends it as ``flinks-auth-key``; the transport
  asks for a fresh one on each attempt. Until a token has been minted, the first token
  request goes alone (:meth:`~flinks_async._guards.Guards.first_alone`).
* MFA answers (:meth:`Authorizer.answer_mfa`): the same request plus ``RequestId`` and
  ``SecurityResponses``, sent once (``max_retries=0``), never logged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

import msgspec

from ._config import Settings
from ._decoding import ModelDecoder
from ._errors import DecodeError, InvalidLoginIdError
from ._models import Authorization, decoder_for
from ._redact import is_guid
from ._transport import Request, Sender

__all__ = ["Authorizer", "check_login_id"]

_AUTHORIZATION = ModelDecoder.of(Authorization, raw=False)


class _Token(msgspec.Struct, rename="pascal"):
    token: str | None = None


class _TokenDecoder:
    """The ``Token`` of a ``/GenerateAuthorizeToken`` answer, or :class:`DecodeError` (a
    :class:`~flinks_async._decoding.Decoder`: such an answer is never big)."""

    def __call__(self, body: bytes) -> str:
        try:
            token = decoder_for(_Token).decode(body).token
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            token = None
        if not token:
            raise DecodeError("GenerateAuthorizeToken answered without a Token")
        return token

    async def in_slices(self, body: bytes) -> str:
        return self(body)


_TOKEN = _TokenDecoder()


def check_login_id(login_id: object) -> str:
    """Return ``login_id`` (surrounding white space stripped, as the CLI does) if it is a
    GUID string, else raise :class:`InvalidLoginIdError`."""
    if isinstance(login_id, str):
        login_id = login_id.strip()
    if not is_guid(login_id):
        shown = (
            f"a {type(login_id).__name__} of {len(login_id)} characters"
            if isinstance(login_id, str)
            else f"a {type(login_id).__name__}"
        )
        raise InvalidLoginIdError(
            f"a Flinks loginId is a GUID like 5e115eac-1209-4f19-641c-08d6d484e2fe, got {shown}",
            login_id=login_id if isinstance(login_id, str) else None,
        )
    assert isinstance(login_id, str)
    return login_id


class Authorizer:
    """Opens sessions for one client (or one :meth:`~FlinksClient.with_options` view: its
    ``settings`` decide the retries), through a :class:`~flinks_async._transport.Sender`
    (the client's transport, or a fake in unit tests)."""

    __slots__ = ("_token_url", "_transport", "_url", "settings")

    def __init__(self, transport: Sender, settings: Settings) -> None:
        self._transport = transport
        self.settings = settings
        self._url = f"{settings.banking_url}/Authorize"
        self._token_url = f"{settings.banking_url}/GenerateAuthorizeToken"

    def authorize(self, login_id: str) -> Coroutine[Any, Any, Authorization]:
        """``POST /Authorize`` for a checked login id; the :class:`Authorization` with its
        ``request_id``, or the typed error of the answer (the send's coroutine itself: no
        frame of ours around it)."""
        return self._send(login_id, None)

    async def answer_mfa(
        self, login_id: str, request_id: str, responses: Mapping[str, str | Sequence[str]]
    ) -> Authorization:
        """``POST /Authorize`` again with the ``RequestId`` of a 203 and the answers
        (``{prompt: answer or [answers]}``), once."""
        check_login_id(login_id)
        if not request_id:
            raise ValueError("answer_mfa needs the RequestId of the MFARequiredError")
        answers = {
            str(prompt): [value] if isinstance(value, str) else [str(v) for v in value]
            for prompt, value in responses.items()
        }
        return await self._send(login_id, {"RequestId": request_id, "SecurityResponses": answers})

    async def _send(self, login_id: str, mfa: dict[str, object] | None) -> Authorization:
        s = self.settings
        body: dict[str, object] = {"LoginId": login_id, "MostRecentCached": True}
        call = Request(
            "POST",
            self._url,
            "Authorize",
            {},
            msgspec.json.encode(body if mfa is None else {**body, **mfa}),
            login_id,
            None,
            _AUTHORIZATION,
            self._token if s.secret_key else None,
            s if mfa is None else dataclasses.replace(s, max_retries=0),  # answers: once
        )
        reply = await self._transport.send(call)
        if reply.status != 200 or not reply.value.request_id:
            raise DecodeError(
                f"Authorize answered HTTP {reply.status} without a RequestId",
                http_status=reply.status,
                login_id=login_id,
                endpoint="Authorize",
            )
        auth: Authorization = reply.value
        auth.login_id = login_id
        return auth

    async def _token(self) -> dict[str, str]:
        """A fresh single-use authorize token, as the ``flinks-auth-key`` header."""
        s = self.settings
        assert s.secret_key is not None
        call = Request(
            "POST",
            self._token_url,
            "GenerateAuthorizeToken",
            {"flinks-auth-key": s.secret_key},
            None,
            None,
            None,
            _TOKEN,
            settings=s,
        )
        # until a token has been minted, the first request goes alone: a wrong key is
        # then told by one request, not by one per login in flight
        first = await self._transport.guards.first_alone(call.endpoint, s)
        try:
            reply = await self._transport.send(call)
        finally:
            if first is not None:
                first.set()
        return {"flinks-auth-key": reply.value}
