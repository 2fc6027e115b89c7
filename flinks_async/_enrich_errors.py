"""Enrich's typed errors (the rest of the tree is :mod:`flinks_async._errors`).

The transport types an Enrich endpoint's error answer with :func:`enrich_error`:
``METHOD_NOT_AVAILABLE`` is :class:`PackageNotSubscribedError`, ``INVALID_REQUEST`` is
:class:`AttributeRequestError` naming the case and what was refused. ``RETRY_LATER``
(``400`` on these routes) stays a :class:`~flinks_async.TransientAPIError`: retried with
backoff, as everywhere.
"""

from __future__ import annotations

from ._errors import APIError, InvalidRequestError, NotAvailableError

__all__ = ["AttributeRequestError", "PackageNotSubscribedError", "enrich_error"]


class PackageNotSubscribedError(NotAvailableError):
    """An Enrich endpoint answered ``METHOD_NOT_AVAILABLE``: its package is not in the
    customer's subscription (Flinks does not document this answer [U]; the emulator
    gives ``403 METHOD_NOT_AVAILABLE``). Never retried; the first such answer of an
    endpoint that never answered a 2xx stops that endpoint for the client (its later
    calls raise at once, sending nothing) and ends a fan-out of it."""


class AttributeRequestError(InvalidRequestError):
    """An Enrich call's ``INVALID_REQUEST``, by case (``.case``): ``"unknown_attribute"``,
    ``"empty_list"``, ``"filter"`` (an ``AccountCategory`` other than ``Operations``),
    ``"account_id"`` (not an account of the login), ``"account_filter"`` (no ids),
    ``"attributes_detail"`` (a name not under ``Attributes``), ``"limit_days"``, ``"login"``
    (the path's loginId is not the session's), or ``None`` (a message not recognised).
    ``.refused`` is the name or id Flinks' message quotes, when it quotes one."""

    case: str | None = None
    refused: str | None = None


#: (words of the message, lower-cased, the first that matches) -> case
_ATTRIBUTE_CASES = (
    ("attributesdetail", "attributes_detail"),
    ("accountfilter", "account_filter"),
    ("accountid", "account_id"),
    ("limitdays", "limit_days"),
    ("filter", "filter"),
    ("empty", "empty_list"),
    ("attribute", "unknown_attribute"),
    ("loginid", "login"),
)


def enrich_error(error: APIError) -> APIError:
    """``error`` from an Enrich endpoint, typed: ``METHOD_NOT_AVAILABLE`` as
    :class:`PackageNotSubscribedError`, ``INVALID_REQUEST`` as
    :class:`AttributeRequestError` (its case and the quoted value); others as they are."""
    kind: type[APIError]
    if error.flinks_code == "METHOD_NOT_AVAILABLE":
        kind = PackageNotSubscribedError
    elif error.flinks_code == "INVALID_REQUEST":
        kind = AttributeRequestError
    else:
        return error
    typed = kind(
        error.message,
        flinks_code=error.flinks_code,
        http_status=error.http_status,
        login_id=error.login_id,
        request_id=error.request_id,
        endpoint=error.endpoint,
    )
    if isinstance(typed, AttributeRequestError):
        text = error.message.lower().replace(" ", "")
        typed.case = next((case for word, case in _ATTRIBUTE_CASES if word in text), None)
        quoted = error.message.split("'")
        typed.refused = quoted[1] if len(quoted) > 2 else None
    return typed
