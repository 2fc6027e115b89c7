"""The emulator's Enrich routes: what Flinks answers an attributes or categorization call
before (or instead of) computing it.

The routes are the client table's rows under the customer root
(``/v3/{customerId}/insight/login/{loginId}/attributes/{requestId}/NAME``,
``.../categorization/login/{loginId}/requestid/{requestId}``), each registered under its
Flinks name. :class:`EnrichGate` holds, per emulator:

* ``packages``: the Enrich endpoints in the customer's subscription (``None``: all). Any
  other answers ``403 METHOD_NOT_AVAILABLE`` (the wire answer is not documented [U]: our
  choice, a refusal that is about the customer, not the login);
* ``session_window``: seconds after a session's ``GetAccountsDetail`` finished within
  which its RequestId may still ask Enrich (Flinks: 8 minutes); later, ``400
  SESSION_EXPIRED`` and the session is gone;
* ``202 OPERATION_PENDING`` while the session's detail is still computing (not yet
  answered 200), and while another Enrich call of the same login is computing;
* the custom ``POST``'s ``INVALID_REQUEST`` cases (:func:`refusal`): an unknown attribute
  name, an empty list, a filter other than ``Operations``, an AccountId not in the login,
  an ``AccountFilter`` without ids, an ``AttributesDetail`` name not under ``Attributes``,
  ``limitDays`` outside 1-365. Each message names what was refused, in quotes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from aiohttp import web

from .._endpoints import ENDPOINTS, Endpoint
from .._enrich_calls import CUSTOM_ATTRIBUTES, LIBRARY_PATHS
from ._enrich_payloads import card_names, categories_payload, custom_payload, library_payload

__all__ = [
    "ENRICH_OPS",
    "ENRICH_ROWS",
    "EnrichGate",
    "add_routes",
    "custom_answer",
    "refusal",
    "static_answer",
]

#: the Enrich rows (under the customer root), by Flinks name
ENRICH_ROWS: dict[str, Endpoint[Any, ..., ...]] = {
    row.flinks_name: row
    for row in (*ENDPOINTS.values(), CUSTOM_ATTRIBUTES)
    if row.route.root == "customer"
}
#: every attribute name the emulator knows (a custom POST may ask any of them)
KNOWN_NAMES = frozenset(
    name
    for family in ENRICH_ROWS
    if family.startswith("Get") and family.endswith("Attributes")
    for name in card_names(family)
)


#: the calls answered at once, with no login (``Categories/CA`` arrives through the
#: BankingServices routes as op ``Categories``)
STATIC = {"Categories", "AttributeLibrary", "AttributeLibraryBusiness"}
#: every op the emulator's Enrich handler answers
ENRICH_OPS = frozenset(ENRICH_ROWS) | STATIC


def add_routes(app: web.Application, handler: Callable[[web.Request], Any]) -> None:
    """Route every Enrich row (and its poll, when it has one) and the library to ``handler``."""
    for row in ENRICH_ROWS.values():
        for route in {row.route, row.poll or row.route}:
            path = f"/v3/{{customer}}/{route.path}"
            app.router.add_route(route.method, path, handler, name=row.flinks_name)
    for business, name in ((False, "AttributeLibrary"), (True, "AttributeLibraryBusiness")):
        path = f"/v3/{{customer}}/{LIBRARY_PATHS[business]}"
        app.router.add_route("GET", path, handler, name=name)


def static_answer(op: str, request: web.Request) -> web.Response | None:
    """The category list or the attribute library, else ``None``."""
    if op == "Categories":
        if request.match_info.get("arg") not in ("CA", "US"):
            return None
        body = categories_payload()
    elif op in ("AttributeLibrary", "AttributeLibraryBusiness"):
        body = library_payload(op.endswith("Business"))
    else:
        return None
    return web.Response(body=body, content_type="application/json")


def custom_answer(body: Mapping[str, Any], login_id: str) -> web.Response:
    """The custom POST's 200: the card of exactly the names asked."""
    names, detail = _card(body.get("Attributes")), _card(body.get("AttributesDetail"))
    variant = int(login_id[:2], 16) % 4
    return web.Response(
        body=custom_payload(names, detail, variant), content_type="application/json"
    )


class EnrichGate:
    """The emulator's Enrich state (see the module docstring)."""

    def __init__(self, packages: Iterable[str] | None, session_window: float) -> None:
        self.packages = None if packages is None else frozenset(packages)
        self.session_window = session_window
        self._detail_done: dict[str, float] = {}  # RequestId -> when its detail was done
        self._detail_asks: dict[str, int] = {}  # RequestId -> asks while it computed
        self._running: dict[str, tuple[str, str]] = {}  # login -> (family, RequestId)

    def detail_done(self, rid: str) -> None:
        """The session's ``GetAccountsDetail`` is done (the window starts)."""
        self._detail_done.setdefault(rid, time.monotonic())

    def detail_answered(self, rid: str, status: int) -> None:
        """The session's ``GetAccountsDetail`` answered ``status``: a 200 is done, a 202
        one more ask while it computes."""
        if status == 200:
            self.detail_done(rid)
        elif status == 202:
            self._detail_asks[rid] = self._detail_asks.get(rid, 0) + 1

    def served(self, family: str, login_id: str, rid: str, status: int) -> None:
        """What ``family`` answered: a 202 marks the login busy, anything else frees it."""
        key = login_id.lower()
        if status == 202:
            self._running.setdefault(key, (family, rid))
        elif self._running.get(key) == (family, rid):
            del self._running[key]

    def before(
        self, family: str, login_id: str, path_login: str | None, rid: str, pending: int
    ) -> tuple[str, str] | str | None:
        """What is answered instead of computing: ``(FlinksCode, message)``, ``"pending"``
        (a 202), or ``None`` (go on: the answer is computed). The detail computes for
        ``pending`` asks of the session, whoever asks (its poll or an Enrich call, as a
        session resumed with its RequestId does); a session that never asked its detail
        stays pending."""
        if self.packages is not None and family not in self.packages:
            return "METHOD_NOT_AVAILABLE", f"{family} is not in your subscription"
        if path_login is not None and path_login.lower() != login_id.lower():
            return "INVALID_REQUEST", f"The LoginId '{path_login}' does not match the RequestId"
        done = self._detail_done.get(rid)
        if done is None:
            asks = self._detail_asks.get(rid)
            if asks is None or asks < pending:  # the detail is still computing
                if asks is not None:
                    self._detail_asks[rid] = asks + 1
                return "pending"
            done = self._detail_done[rid] = time.monotonic()
        if time.monotonic() - done > self.session_window:
            return "SESSION_EXPIRED", "The session expired; authorize again"
        running = self._running.get(login_id.lower())
        if running is not None and running != (family, rid):
            return "pending"  # another Enrich call of this login is computing
        return None


def refusal(body: Mapping[str, Any], account_ids: Collection[Any]) -> str | None:
    """The ``INVALID_REQUEST`` message for a custom attributes ``POST`` body (the login's
    detail listing ``account_ids``), else ``None``."""
    names = _card(body.get("Attributes"))
    if not names:
        return "The attribute list is empty"
    unknown = [n for n in names if n not in KNOWN_NAMES]
    if unknown:
        return f"Unknown attribute '{unknown[0]}'"
    filters = body.get("Filters")
    if filters is not None:
        categories = filters.get("AccountCategory") if isinstance(filters, dict) else None
        bad = [c for c in categories or [None] if c != "Operations"]
        if bad:
            return f"Invalid filter '{bad[0]}': AccountCategory accepts only Operations"
    if "AccountFilter" in body:
        ids = body["AccountFilter"]
        if not isinstance(ids, list) or not ids:
            return "AccountFilter holds no AccountId"
        foreign = [i for i in ids if i not in account_ids]
        if foreign:
            return f"AccountId '{foreign[0]}' is not an account of this login"
    detail = _card(body.get("AttributesDetail"))
    missing = [n for n in detail if n not in names]
    if missing:
        return f"AttributesDetail attribute '{missing[0]}' is not listed under Attributes"
    days = body.get("limitDays")
    if days is not None and not (isinstance(days, int) and 1 <= days <= 365):
        return f"limitDays '{days}' is not between 1 and 365"
    return None


def _card(value: Any) -> list[str]:
    names = value.get("Card") if isinstance(value, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else []
