"""The emulator's account management (:class:`Accounts`, ``Emulator.accounts``): nightly
refresh on or off per login, the logins no longer eligible for it, stored security
questions, and the institutions directory, all deterministic from the emulator's seed.

* Each login draws, from ``seed`` and its id: whether its scheduled refresh is on
  (``scheduled_refresh_rate``), whether it is ineligible (``ineligible_rate``, among those
  with refresh on) with a realistic ``LastRefreshState`` / ``LastRefreshErrorCode`` /
  ``LastRefreshDate``, and 0 to 3 stored questions. ``SetScheduledRefresh`` changes what
  Authorize then reports in ``Login.IsScheduledRefresh``.
* ``GetNightlyRefreshStatus`` lists the ineligible logins among those the emulator knows:
  every login it has seen (authorized, asked about) and those :meth:`Accounts.enroll`
  names (a customer's portfolio, known before any request).
* ``Institutions``: ``institutions`` of them (3,000 by default), ids 1..n, Canadian ones
  in English and French, US ones with routing numbers; pages of at most 1,000.

The states and codes are realistic, not Flinks' list (which is not published) [U].
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypedDict

from .._management import OPERATIONS

#: (LastRefreshState, LastRefreshErrorCode) of ineligible logins, the first most often:
#: automatic refresh stops at an MFA prompt (OTP, push) nobody answers overnight
INELIGIBLE_STATES: tuple[tuple[str, str | None], ...] = (
    ("AnsweringSecurityChallenge", None),
    ("AnsweringSecurityChallenge", None),
    ("AnsweringSecurityChallenge", "INVALID_SECURITY_RESPONSE"),
    ("Authorizing", "INVALID_LOGIN"),
    ("Authorizing", "DISABLED_LOGIN"),
    ("Authorizing", "INVALID_PASSWORD"),
    ("Completed", None),  # no refresh or cached call for 7 days
)
_QUESTIONS = (
    "What city were you born in?",
    "What is the name of your first pet?",
    "What was your first car?",
    "What is your mother's maiden name?",
    "What street did you grow up on?",
)
_BANKS = ("Bank", "Credit Union", "Trust", "Caisse", "Savings", "Financial")
_TODAY = dt.datetime(2026, 12, 7, 4, 0, 0)  # fixed: dates depend on the seed only


class AccountOptions(TypedDict, total=False):
    """The emulator's account-management keywords (see :class:`Accounts`)."""

    scheduled_refresh_rate: float
    ineligible_rate: float
    institutions: int
    nightly_refresh_key: str | None


@dataclasses.dataclass(slots=True)
class LoginAccount:
    """What the emulator's Flinks knows of one login's account management."""

    scheduled: bool
    #: ``(LastRefreshState, LastRefreshErrorCode, LastRefreshDate)`` when ineligible
    ineligible: tuple[str, str | None, str] | None
    #: question -> answer (``None``: not answered yet)
    questions: dict[str, str | None]


class Accounts:
    """Account-management state of one :class:`~flinks_async.testing.Emulator`."""

    def __init__(
        self,
        *,
        seed: int = 0,
        scheduled_refresh_rate: float = 1.0,
        ineligible_rate: float = 0.0,
        institutions: int = 3000,
        nightly_refresh_key: str | None = None,
    ) -> None:
        for name, rate in (
            ("scheduled_refresh_rate", scheduled_refresh_rate),
            ("ineligible_rate", ineligible_rate),
        ):
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} is a probability (0 to 1), got {rate}")
        self.seed = seed
        self.scheduled_refresh_rate = scheduled_refresh_rate
        self.ineligible_rate = ineligible_rate
        self.nightly_refresh_key = nightly_refresh_key
        self.logins: dict[str, LoginAccount] = {}
        self._institutions = [_institution(seed, i) for i in range(1, institutions + 1)]
        self._by_routing = {
            n: inst for inst in self._institutions for n in inst.get("RoutingNumbers", ())
        }

    def login(self, login_id: str) -> LoginAccount:
        """The login's state, drawn from the seed on first use."""
        key = login_id.lower()
        found = self.logins.get(key)
        if found is None:
            found = self.logins[key] = self._draw(key)
        return found

    def enroll(self, login_ids: Iterable[str]) -> None:
        """Make these logins known (as a customer's portfolio is to Flinks)."""
        for login_id in login_ids:
            self.login(login_id)

    def set_login(
        self,
        login_id: str,
        *,
        scheduled: bool = True,
        ineligible: tuple[str, str | None] | None = None,
        questions: Iterable[str] = (),
    ) -> None:
        """Give one login its own state (``ineligible``: its state and error code)."""
        when = _TODAY - dt.timedelta(days=9)
        self.logins[login_id.lower()] = LoginAccount(
            scheduled,
            (*ineligible, when.isoformat()) if ineligible else None,
            dict.fromkeys(questions),
        )

    def _draw(self, key: str) -> LoginAccount:
        rng = random.Random(f"{self.seed}:accounts:{key}")
        scheduled = rng.random() < self.scheduled_refresh_rate
        ineligible = None
        if rng.random() < self.ineligible_rate and scheduled:
            state, code = rng.choice(INELIGIBLE_STATES)
            when = _TODAY - dt.timedelta(days=rng.randint(8, 60), seconds=rng.randint(0, 86399))
            ineligible = (state, code, when.isoformat() + ".1234567")
        asked = rng.sample(_QUESTIONS, rng.randint(0, 3))
        return LoginAccount(scheduled, ineligible, dict.fromkeys(asked))

    # --- the answers ---------------------------------------------------------------

    def authorized(self, answer: dict[str, Any]) -> dict[str, Any]:
        """An Authorize 200 with the login's ``IsScheduledRefresh``."""
        login = answer.get("Login")
        if isinstance(login, dict) and isinstance(login.get("Id"), str):
            login["IsScheduledRefresh"] = self.login(login["Id"]).scheduled
        return answer

    def set_scheduled(self, body: Mapping[str, Any]) -> tuple[int, Any]:
        """``PATCH SetScheduledRefresh``: keys bound case-blind (as .NET does)."""
        given = {k.lower(): v for k, v in body.items()}
        login_id, on = given.get("loginid"), given.get("isactivated")
        if not isinstance(login_id, str) or len(login_id) != 36 or not isinstance(on, bool):
            return 400, _envelope(400, "INVALID_REQUEST", "LoginId and IsActivated required")
        self.login(login_id).scheduled = on
        if not on:
            self.login(login_id).ineligible = None  # no longer listed
        word = "activated" if on else "deactivated"
        return 200, f"LoginId {login_id} has now been {word} for automatic refresh"

    def nightly_status(self, authorization: str) -> tuple[int, Any]:
        """``GET GetNightlyRefreshStatus`` (Bearer key checked when the emulator has one)."""
        if self.nightly_refresh_key and authorization != f"Bearer {self.nightly_refresh_key}":
            return 401, _envelope(401, "UNAUTHORIZED", "Invalid bearer token")
        cards = [
            {
                "LoginId": key,
                "LastRefreshDate": state[2],
                "LastRefreshState": state[0],
                "LastRefreshErrorCode": state[1],
            }
            for key, login in self.logins.items()
            if login.scheduled and (state := login.ineligible) is not None
        ]
        return 200, {"HttpStatusCode": 200, "IneligibleCards": cards}

    def questions(self, login_id: str) -> tuple[int, Any]:
        """``GET GetMFAQuestions/{loginId}``: the unanswered stored questions."""
        open_ = [q for q, a in self.login(login_id).questions.items() if a is None]
        return 200, {"Message": "", "Questions": [{"Question": q} for q in open_]}

    def answer(self, body: Mapping[str, Any]) -> tuple[int, Any]:
        """``PATCH AnswerMFAQuestions``: an unknown question is ``QUESTION_NOT_FOUND``."""
        given = {k.lower(): v for k, v in body.items()}
        login_id, items = given.get("loginid"), given.get("questions")
        if not isinstance(login_id, str) or not isinstance(items, list):
            return 400, _envelope(400, "INVALID_REQUEST", "LoginId and Questions required")
        stored = self.login(login_id).questions
        pairs = [(i.get("Question"), i.get("Answer")) for i in items if isinstance(i, dict)]
        if any(q not in stored or not isinstance(a, str) for q, a in pairs) or not pairs:
            return 400, _envelope(400, "QUESTION_NOT_FOUND", "Unknown question")
        stored.update(pairs)  # type: ignore[arg-type]
        return 200, {"Message": "Answers updated"}

    def institutions(self, skip: str | None, take: str | None) -> tuple[int, Any]:
        """``GET Institutions?skip=&take=`` (take at most 1,000: more is cut to 1,000)."""
        try:
            first, size = int(skip or 0), min(int(take or 1000), 1000)
        except ValueError:
            return 400, _envelope(400, "INVALID_REQUEST", "skip and take are numbers")
        if first < 0 or size < 1:
            return 400, _envelope(400, "INVALID_REQUEST", "skip >= 0, take >= 1")
        page = self._institutions[first : first + size]
        return 200, {"Data": page, "Count": len(self._institutions)}

    def by_routing_number(self, number: str) -> tuple[int, Any]:
        """``GET Institutions/RoutingNumber/{n}``: unknown, 404 [U]."""
        found = self._by_routing.get(number)
        if found is None:
            return 404, _envelope(404, "INVALID_REQUEST", "No institution for this routing number")
        return 200, found


def _envelope(status: int, code: str, message: str) -> dict[str, Any]:
    return {"HttpStatusCode": status, "Message": message, "FlinksCode": code}


def _institution(seed: int, n: int) -> dict[str, Any]:
    """Institution ``n`` of the directory, from ``seed``."""
    rng = random.Random(f"{seed}:institution:{n}")
    name = f"{rng.choice(('North', 'First', 'Pacific', 'Royal', 'Union', 'Metro'))} "
    name += f"{rng.choice(_BANKS)} {n}"
    us = rng.random() < 0.4
    slug = name.lower().replace(" ", "")
    urls = [
        {"Type": "Logo", "Url": f"https://cdn.example/logos/{n}.png"},
        {"Type": "Website", "Url": f"https://{slug}.example"},
    ]
    locs = [{"Language": "en", "Name": name, "Urls": urls}]
    if not us:
        locs.append({"Language": "fr", "Name": f"{name} (Québec)", "Urls": urls})
    inst: dict[str, Any] = {
        "Id": n,
        "Localizations": locs,
        "Status": "Active" if rng.random() < 0.95 else "Inactive",
        "Country": "US" if us else "CA",
    }
    if us:
        inst["RoutingNumbers"] = [f"{(n * 7919 + i) % 10**9:09d}" for i in range(rng.randint(1, 2))]
    return inst


#: the emulator's answer of each row of the client's table (``DeleteCard``: the emulator's
#: own, it changes what Authorize answers): ``(accounts, path parameters, body, query,
#: Authorization header) -> (status, JSON value)``
Answer = Callable[
    [Accounts, dict[str, str], Mapping[str, Any], Mapping[str, str], str], tuple[int, Any]
]
ANSWERS: dict[str, Answer] = {
    "SetScheduledRefresh": lambda a, path, body, query, auth: a.set_scheduled(body),
    "GetNightlyRefreshStatus": lambda a, path, body, query, auth: a.nightly_status(auth),
    "GetMFAQuestions": lambda a, path, body, query, auth: a.questions(path["loginId"]),
    "AnswerMFAQuestions": lambda a, path, body, query, auth: a.answer(body),
    "Institutions": lambda a, path, body, query, auth: a.institutions(
        query.get("skip"), query.get("take")
    ),
    "InstitutionByRoutingNumber": lambda a, path, body, query, auth: a.by_routing_number(
        path["routingNumber"]
    ),
}
#: each row's path template as a regex, a group per path parameter
_PATTERNS = {
    name: re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(row.path)) + "$")
    for name, row in OPERATIONS.items()
}


def route(
    accounts: Accounts,
    method: str,
    op: str,
    arg: str | None,
    body: Mapping[str, Any],
    query: Mapping[str, str],
    authorization: str,
) -> tuple[str | None, int, Any] | None:
    """The answer of an account-management request, found by the client's table
    (:data:`~flinks_async._management.OPERATIONS`): ``(login id, status, JSON value)``, or
    ``None`` when it is none of them."""
    tail = op if arg is None else f"{op}/{arg}"
    for name, row in OPERATIONS.items():
        found = _PATTERNS[name].match(tail)
        if found is None or row.method != method or name not in ANSWERS:
            continue
        path = found.groupdict()
        login = path.get("loginId") or body.get("LoginId")
        status, value = ANSWERS[name](accounts, path, body, query, authorization)
        return (login if isinstance(login, str) else None), status, value
    return None
