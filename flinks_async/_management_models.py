"""Typed answers of Flinks' account-management endpoints (see
:mod:`flinks_async._management`): the nightly refresh status, stored MFA questions, the
institutions directory and ``DeleteCard``.

The same conventions as :mod:`flinks_async._models` (PascalCase on the wire, every field
optional, unknown keys reported as schema drift and kept on ``.extra`` with
``keep_extra=True``, dates kept as sent).
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from ._models import _Model, parse_datetime

__all__ = [
    "AnswersSaved",
    "CardDeleted",
    "FinancialInstitution",
    "IneligibleLogin",
    "InstitutionLocalization",
    "InstitutionUrl",
    "InstitutionsPage",
    "NightlyRefreshStatus",
    "StoredQuestion",
    "StoredQuestions",
]


class _Managed(_Model):
    """An account-management answer: ``__data_fields__`` as on the data answers (a 200
    holding none of them is :class:`~flinks_async.SchemaDriftError`, not an empty answer)."""

    __data_fields__: ClassVar[tuple[str, ...]] = ()


class IneligibleLogin(_Model):
    """One login of :class:`NightlyRefreshStatus`: its nightly refresh is on, but it is no
    longer eligible; the person must re-link it through Flinks Connect."""

    login_id: str | None = None
    #: as Flinks sent it: a .NET timestamp without a zone (``"2026-11-28T04:12:33.12"``)
    last_refresh_date: str | None = None
    #: where the last refresh stopped, e.g. ``"AnsweringSecurityChallenge"``
    last_refresh_state: str | None = None
    #: ``None`` or a FlinksCode (``"INVALID_LOGIN"``...)
    last_refresh_error_code: str | None = None

    @property
    def last_refresh_at(self) -> dt.datetime | None:
        """``last_refresh_date`` parsed leniently; naive, as sent (Flinks does not say
        which zone); ``None`` for what it cannot read."""
        return parse_datetime(self.last_refresh_date)


class NightlyRefreshStatus(_Managed):
    """The ``200`` of ``GET /GetNightlyRefreshStatus``: the logins with nightly refresh on
    that are **not** eligible (an empty list: every such login is fine)."""

    __data_fields__ = ("ineligible_cards",)

    http_status_code: int | None = None
    ineligible_cards: list[IneligibleLogin] | None = None

    def by_login_id(self) -> dict[str, IneligibleLogin]:
        """The ineligible logins by login id, lower-cased (GUIDs compare case-blind)."""
        return {c.login_id.lower(): c for c in self.ineligible_cards or () if c.login_id}


class StoredQuestion(_Model):
    """One stored security question of a login."""

    question: str | None = None


class StoredQuestions(_Managed):
    """The ``200`` of ``GET /GetMFAQuestions/{loginId}``: the login's stored questions that
    have no answer yet."""

    message: str | None = None
    questions: list[StoredQuestion] | None = None


class AnswersSaved(_Managed):
    """The ``200`` of ``PATCH /AnswerMFAQuestions`` (``{"Message": "Answers updated"}``):
    the answers are stored; the bank checks them only at its next prompt."""

    __data_fields__ = ("message",)

    message: str | None = None


class InstitutionUrl(_Model):
    """A URL of an institution (``type``: e.g. ``"Logo"``, ``"Website"``)."""

    type: str | None = None
    url: str | None = None


class InstitutionLocalization(_Model):
    """An institution's name and URLs in one language (``"en"``, ``"fr"``...)."""

    language: str | None = None
    name: str | None = None
    urls: list[InstitutionUrl] | None = None


class FinancialInstitution(_Managed):
    """One institution of Flinks' directory (``GET /Institutions``, or by routing number).
    ``routing_numbers`` is sent for US institutions."""

    __data_fields__ = ("id",)

    id: int | str | None = None
    localizations: list[InstitutionLocalization] | None = None
    status: str | None = None
    country: str | None = None
    routing_numbers: list[str] | None = None

    def name(self, language: str = "en") -> str | None:
        """The name in ``language`` (a prefix match: ``"en"`` finds ``"en-CA"``), else the
        first localization's, else ``None``."""
        found = self.localizations or []
        for loc in found:
            if (loc.language or "").lower().startswith(language.lower()):
                return loc.name
        return found[0].name if found else None


class InstitutionsPage(_Managed):
    """One page of ``GET /Institutions?skip=&take=``: ``data`` and ``count``, the number of
    institutions in all."""

    __data_fields__ = ("data",)

    data: list[FinancialInstitution] | None = None
    count: int | None = None


class CardDeleted(_Managed):
    """The ``200`` of ``DELETE /DeleteCard/{loginId}``, as documented: ``StatusCode`` (not
    ``HttpStatusCode``, unlike the other answers) and the ``Message``."""

    __data_fields__ = ("status_code",)

    status_code: int | None = None
    message: str | None = None
