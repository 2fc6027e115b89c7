"""Account management: Flinks' endpoints that are not 202-polled data calls.

One table (:data:`OPERATIONS`, one :class:`Operation` row per endpoint: its Flinks name,
method, path template under ``.../BankingServices/``, what its 200 decodes into and its
credential), and :class:`AccountManagement`, the client's methods over it, which
:class:`~flinks_async.FlinksClient` inherits. Each call is one request sent through the
client's transport (retries, rate limit, guards, body budget, events, redaction) and its
200 decoded by the one decode path, with the client's schema check (drift reported, never
dropped).

* ``PATCH SetScheduledRefresh``: the 200 is a bare JSON string;
* ``GET GetNightlyRefreshStatus``: ``Authorization: Bearer <nightly_refresh_key>``, its
  own private key; the client's set-up breaker leaves it out (a wrong key for this one
  endpoint must not stop the data calls);
* ``GET GetMFAQuestions/{loginId}`` and ``PATCH AnswerMFAQuestions`` (the answers are
  never logged);
* ``GET Institutions?skip=&take=`` (at most 1,000 a page) and
  ``GET Institutions/RoutingNumber/{routingNumber}``;
* ``DELETE DeleteCard/{loginId}``, checked against the documented answer (``StatusCode``).

``AuthorizeMultiple`` is left out on purpose: it is gone from today's API reference and
its answer was never documented.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ._authorize import check_login_id
from ._config import Settings
from ._decoding import Decoder, ModelDecoder, Unfit
from ._errors import APIError, ConfigurationError, DecodeError
from ._management_models import (
    AnswersSaved,
    CardDeleted,
    FinancialInstitution,
    InstitutionsPage,
    NightlyRefreshStatus,
    StoredQuestions,
)
from ._transport import Request, Transport

if TYPE_CHECKING:
    from ._schema import SchemaCheck

__all__ = ["MAX_PAGE", "OPERATIONS", "AccountManagement", "Operation"]

#: the most institutions one ``GET /Institutions`` page holds (Flinks' documented cap)
MAX_PAGE = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """One account-management endpoint: a row of :data:`OPERATIONS`."""

    flinks_name: str  #: as errors, events and logs name it
    method: str
    #: under ``.../BankingServices/``; ``{loginId}`` and ``{routingNumber}`` may appear
    path: str
    #: what its 200 decodes into; ``str``: a bare JSON string
    model: type[Any]
    #: sent with ``Authorization: Bearer <nightly_refresh_key>``
    bearer: bool = False

    @property
    def head(self) -> str:
        """The path's first segment (``"GetMFAQuestions"``)."""
        return self.path.split("/", 1)[0]

    def url(self, settings: Settings, **params: str) -> str:
        """The URL, its path parameters filled in (``loginId=...``)."""
        return f"{settings.banking_url}/{self.path.format(**params)}"


#: every account-management endpoint, by Flinks name
OPERATIONS: dict[str, Operation] = {
    op.flinks_name: op
    for op in (
        Operation("SetScheduledRefresh", "PATCH", "SetScheduledRefresh", str),
        Operation(
            "GetNightlyRefreshStatus",
            "GET",
            "GetNightlyRefreshStatus",
            NightlyRefreshStatus,
            bearer=True,
        ),
        Operation("GetMFAQuestions", "GET", "GetMFAQuestions/{loginId}", StoredQuestions),
        Operation("AnswerMFAQuestions", "PATCH", "AnswerMFAQuestions", AnswersSaved),
        Operation("Institutions", "GET", "Institutions", InstitutionsPage),
        Operation(
            "InstitutionByRoutingNumber",
            "GET",
            "Institutions/RoutingNumber/{routingNumber}",
            FinancialInstitution,
        ),
        Operation("DeleteCard", "DELETE", "DeleteCard/{loginId}", CardDeleted),
    )
}


class _BareString:
    """The :class:`~flinks_async._decoding.Decoder` of a 200 that is a bare JSON string
    (``SetScheduledRefresh``); anything else is :class:`DecodeError` (not retried: the
    change was probably made)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def __call__(self, body: bytes) -> str:
        try:
            value = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            raise DecodeError(
                f"{self.endpoint} answered 200 with a body that is not JSON ({len(body)} bytes)",
                retryable=body[:1].isalpha() or body[:1] == b"<",
            ) from None
        if not isinstance(value, str):
            raise Unfit(
                f"{self.endpoint} answered 200 with a JSON {type(value).__name__}, not the "
                "documented bare JSON string (the change was probably made)"
            )
        return value

    async def in_slices(self, body: bytes) -> str:
        return self(body)


class AccountManagement:
    """The client's account-management methods (one :data:`OPERATIONS` row each);
    :class:`~flinks_async.FlinksClient` inherits them."""

    __slots__ = ()

    settings: Settings
    _transport: Transport
    _schema: SchemaCheck
    _data_headers: dict[str, str]

    async def _manage(
        self,
        name: str,
        *,
        login_id: str | None = None,
        body: Mapping[str, Any] | None = None,
        query: str = "",
        **params: str,
    ) -> Any:
        """Send one account-management request of the row ``name``; its decoded 200."""
        op = OPERATIONS[name]
        s = self.settings
        headers = self._data_headers
        if op.bearer:
            if not s.nightly_refresh_key:
                raise ConfigurationError(
                    f"{name} needs nightly_refresh_key (FLINKS_NIGHTLY_REFRESH_KEY): the "
                    "private key Flinks gives for it, not the API or secret key"
                )
            headers = {**headers, "Authorization": f"Bearer {s.nightly_refresh_key}"}
            # a wrong key for this one endpoint must not stop the client's data calls
            s = dataclasses.replace(s, stop_on_setup_error=False)
        if login_id is not None:
            params["loginId"] = login_id
        decode: Decoder = _BareString(name)
        if op.model is not str:
            model = ModelDecoder.of(op.model, raw=False)
            decode = self._schema.wrap(model, op.model, name, login_id)
        call = Request(
            op.method,
            op.url(s, **params) + query,
            name,
            headers,
            msgspec.json.encode(body) if body is not None else None,
            login_id,
            decode=decode,
            settings=s,
        )
        return (await self._transport.send(call)).value

    async def set_scheduled_refresh(self, login_id: str, enabled: bool) -> str:
        """Turn a login's nightly (scheduled) refresh on or off (``PATCH
        /SetScheduledRefresh``); returns Flinks' message (its 200 is a bare JSON string:
        ``"LoginId ... has now been activated for automatic refresh"``). Authorize answers
        then show it in ``Login.is_scheduled_refresh``."""
        login_id = check_login_id(login_id)
        if not isinstance(enabled, bool):
            raise ConfigurationError(f"enabled must be True or False, got {enabled!r}")
        body = {"LoginId": login_id, "IsActivated": enabled}
        text: str = await self._manage("SetScheduledRefresh", login_id=login_id, body=body)
        return text

    async def nightly_refresh_status(self) -> NightlyRefreshStatus:
        """``GET /GetNightlyRefreshStatus``, with ``nightly_refresh_key`` as its Bearer
        credential: the logins whose nightly refresh is on but which are no longer
        eligible (each needs the person to re-link through Flinks Connect).
        :class:`ConfigurationError` without the key; a wrong key raises the answer's
        :class:`APIError` (``AccessDeniedError``...) and never trips the set-up breaker."""
        status: NightlyRefreshStatus = await self._manage("GetNightlyRefreshStatus")
        return status

    async def mfa_questions(self, login_id: str) -> StoredQuestions:
        """The login's stored security questions that have no answer yet (``GET
        /GetMFAQuestions/{loginId}``; Canada, banks with simple questions only)."""
        login_id = check_login_id(login_id)
        questions: StoredQuestions = await self._manage("GetMFAQuestions", login_id=login_id)
        return questions

    async def answer_mfa_questions(self, login_id: str, answers: Mapping[str, str]) -> str:
        """Store answers to the login's security questions (``{question: answer}``; ``PATCH
        /AnswerMFAQuestions``); returns Flinks' message (``"Answers updated"``). The bank
        checks them only at its next prompt. The answers are never logged."""
        login_id = check_login_id(login_id)
        if not answers:
            raise ConfigurationError("answer_mfa_questions needs at least one answer")
        body = {
            "LoginId": login_id,
            "Questions": [{"Question": str(q), "Answer": str(a)} for q, a in answers.items()],
        }
        saved: AnswersSaved = await self._manage("AnswerMFAQuestions", login_id=login_id, body=body)
        return saved.message or ""

    async def institutions_page(self, skip: int = 0, take: int = MAX_PAGE) -> InstitutionsPage:
        """One page of Flinks' institutions directory (``GET /Institutions?skip=&take=``,
        ``take`` at most 1,000)."""
        if not (isinstance(skip, int) and skip >= 0 and isinstance(take, int)):
            raise ConfigurationError("skip must be an int >= 0 and take an int")
        if not 1 <= take <= MAX_PAGE:
            raise ConfigurationError(f"take must be 1 to {MAX_PAGE}, got {take}")
        page: InstitutionsPage = await self._manage(
            "Institutions", query=f"?skip={skip}&take={take}"
        )
        return page

    async def institutions(self, page_size: int = MAX_PAGE) -> AsyncIterator[FinancialInstitution]:
        """Every institution of the directory, fetching page after page (``page_size`` a
        page, at most 1,000) until a page is short, empty, or ``Count`` is reached::

            async for inst in client.institutions():
                print(inst.id, inst.name("fr"))
        """
        skip = 0
        while True:
            page = await self.institutions_page(skip, page_size)
            data = page.data or []
            for institution in data:
                yield institution
            skip += len(data)
            if len(data) < page_size or (page.count is not None and skip >= page.count):
                return

    async def institution_by_routing_number(self, routing_number: str) -> FinancialInstitution:
        """The institution of a US routing number (``GET
        /Institutions/RoutingNumber/{n}``); an unknown one raises the answer's
        :class:`APIError`."""
        number = str(routing_number).strip()
        if not number.isdigit() or not number.isascii():
            raise ConfigurationError("a routing number is digits only")
        found: FinancialInstitution = await self._manage(
            "InstitutionByRoutingNumber", routingNumber=number
        )
        return found

    async def delete_card(self, login_id: str) -> CardDeleted:
        """Delete the login and its data at Flinks (``DELETE /DeleteCard/{loginId}``).

        The answer is checked against the documented one: ``{"StatusCode": 200,
        "Message": ...}``. A 200 without ``StatusCode`` raises
        :class:`~flinks_async.SchemaDriftError`, one whose ``StatusCode`` is not 200 an
        :class:`APIError` (both not retried: the login may be deleted already). A login
        Flinks does not know gets its error answer (typed, e.g. ``LoginError``)."""
        login_id = check_login_id(login_id)
        done: CardDeleted = await self._manage("DeleteCard", login_id=login_id)
        if done.status_code != 200:
            raise APIError(
                f"DeleteCard answered HTTP 200 whose StatusCode is {done.status_code}: "
                f"{(done.message or '')[:200]}",
                http_status=done.status_code,
                login_id=login_id,
                endpoint="DeleteCard",
            )
        return done
