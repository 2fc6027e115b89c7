"""Deterministic Enrich payloads: attribute cards and categorized transactions.

Names follow Flinks' conventions: ``sum_`` / ``count_`` / ``average_monthly_``
prefixes; ``_30_days`` / ``_90_days`` / ``_365_days`` windows; monthly series
``_current_month``, ``_previous_month``, ``_N_months_ago``; ``_trend_simple`` enums
(``CONSISTENT``, ``DECREASING``, ``INCREASING``); ``_biz`` for business attributes;
``NONE_DETECTED`` where nothing was found; negative cash flows. The All packages hold a
few hundred attributes. The same ``(package, variant)`` always gives the same bytes.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

__all__ = [
    "ATTRIBUTE_PAYLOADS",
    "attributes_payload",
    "card_names",
    "categories_payload",
    "categorization_payload",
    "custom_payload",
    "library_payload",
]

_ENCODE = msgspec.json.Encoder(decimal_format="number").encode  # numbers, as Flinks sends
_WINDOWS = ("30_days", "90_days", "365_days")
_MONTHS = ("current_month", "previous_month", *(f"{n}_months_ago" for n in range(2, 12)))
_TRENDS = ("CONSISTENT", "DECREASING", "INCREASING")
_EMPLOYERS = ("ACME LOGISTICS INC", "HYDRO QUEBEC", "UNIVERSITE LAVAL", "CGI GROUP")
#: each package's themes: (stem, kind) where kind says how the stem is expanded
_PACKAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "GetIncomeAttributes": (
        ("employer_income", "money"),
        ("government_income", "money"),
        ("employer_income", "monthly"),
        ("employer_income", "trend"),
        ("employer_income_frequency", "frequency"),
        ("employer_name", "employer"),
    ),
    "GetLendingAttributes": (
        ("loan_payments", "money"),
        ("micro_lender_deposits", "count"),
        ("payday_loan", "flag"),
        ("net_cash_flow", "monthly"),
    ),
    "GetCreditRiskAttributes": (
        ("nsf", "count"),
        ("overdraft_fees", "money"),
        ("stop_payments", "count"),
        ("net_cash_flow", "money"),
        ("balance", "trend"),
    ),
    "GetUserAnalysisAttributes": (
        ("spending", "money"),
        ("food_and_dining", "money"),
        ("active_days", "count"),
        ("spending", "monthly"),
    ),
    "GetBusinessAnalysisAttributes": (
        ("revenue_biz", "money"),
        ("expenses_biz", "money"),
        ("revenue_biz", "monthly"),
        ("revenue_biz", "trend"),
    ),
}
_CONSUMER = (
    "GetIncomeAttributes",
    "GetLendingAttributes",
    "GetCreditRiskAttributes",
    "GetUserAnalysisAttributes",
)
_MORE = (
    *("rent", "utilities", "telecom", "insurance", "transfers_in", "transfers_out", "atm"),
    *("subscriptions", "groceries", "fuel", "child_support"),
)
_MORE_BIZ = ("payroll_biz", "taxes_biz", "card_sales_biz", "supplier_payments_biz", "loans_biz")
_PACKAGES["GetAllAttributes"] = (
    *(t for p in _CONSUMER for t in _PACKAGES[p]),
    *((stem, kind) for stem in _MORE for kind in ("money", "count", "monthly", "trend")),
)
_PACKAGES["GetAllBusinessAttributes"] = (
    *_PACKAGES["GetBusinessAnalysisAttributes"],
    *((stem, kind) for stem in _MORE_BIZ for kind in ("money", "count", "monthly", "trend")),
)


def _expand(stem: str, kind: str, rng: random.Random) -> list[tuple[str, Any]]:
    """The (name, value) pairs of one theme."""
    none = rng.random() < 0.15  # nothing of the kind found
    sign = -1 if "net_cash_flow" in stem or "expenses" in stem else 1

    def money() -> Any:
        if none:
            return "NONE_DETECTED"
        return sign * Decimal(rng.randint(0, 900_000)) / 100

    if kind == "money":
        out = [(f"sum_{stem}_{w}", money()) for w in _WINDOWS]
        return out + [(f"average_monthly_{stem}_{w}", money()) for w in _WINDOWS[1:]]
    if kind == "count":
        return [(f"count_{stem}_{w}", 0 if none else rng.randint(0, 12)) for w in _WINDOWS]
    if kind == "monthly":
        return [(f"sum_{stem}_{m}", money()) for m in _MONTHS]
    if kind == "trend":
        return [(f"{stem}_trend_simple", "NONE_DETECTED" if none else rng.choice(_TRENDS))]
    if kind == "frequency":
        return [(stem, "NONE_DETECTED" if none else rng.choice(("Monthly", "Biweekly")))]
    if kind == "employer":
        return [(f"{stem}_1", rng.choice(_EMPLOYERS)), (f"{stem}_2", None)]
    return [(f"has_{stem}", rng.choice(("YES", "NO")))]  # flag


def card_names(package: str) -> list[str]:
    """Every attribute name of ``package``'s card (as served)."""
    return [name for name, _ in _card(package, 0)]


def _card(package: str, variant: int) -> list[tuple[str, Any]]:
    rng = random.Random(f"{package}:{variant}")
    pairs: list[tuple[str, Any]] = []
    for stem, kind in _PACKAGES[package]:
        pairs.extend(_expand(stem, kind, rng))
    return list(dict(pairs).items())  # a name once


def _detail(rng: random.Random, names: list[str]) -> list[dict[str, Any]]:
    """``AttributesDetail``: the documented majority shape (a list), slashed dates."""
    out = []
    for name in names:
        txs = [
            {
                "TransactionId": f"tx-{rng.getrandbits(32):08x}",
                "AccountId": f"acct-{rng.randint(1, 3)}",
                "Date": f"2021/{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}",
                "Description": "PAYROLL DEPOSIT",
                "Debit": None,
                "Credit": Decimal(rng.randint(100_000, 300_000)) / 100,
                "Balance": Decimal(rng.randint(0, 900_000)) / 100,
            }
            for _ in range(rng.randint(1, 3))
        ]
        out.append({"Attribute": name, "Transactions": txs})
    return out


@functools.cache
def attributes_payload(package: str, variant: int = 0, detail: tuple[str, ...] = ()) -> bytes:
    """The 200 of an attributes endpoint, ``detail`` the names whose transactions come
    back in ``Card.AttributesDetail``."""
    card: dict[str, Any] = {"Id": f"00000000-0000-4000-8000-{variant:012d}"}
    card.update(_card(package, variant))
    if detail:
        card["AttributesDetail"] = _detail(random.Random(f"detail:{variant}"), list(detail))
    answer: dict[str, Any] = {"HttpStatusCode": 200, "Card": card}
    if variant % 2 == 0:  # "Login may be absent"
        answer["Login"] = {"Id": card["Id"], "Username": "Greatday", "Type": "Personal"}
    return _ENCODE(answer)


_CATEGORIES = (
    ("Income", "Payroll", None),
    ("Food and Dining", "Groceries", "Debit"),
    ("Bills and Utilities", "Electricity", "Debit"),
    ("Transfer", "Interac", "Credit"),
    ("Loans", "Payday Loan", "Debit"),
)


@functools.cache
def categorization_payload(size: int = 2_000, variant: int = 0) -> bytes:
    """The 200 of ``GetCategorization``: Debit or Credit omitted rather than null, one
    lowercase ``credit`` (as in Flinks' own example), dates with dashes."""
    rng = random.Random(f"categorization:{variant}")
    txs: list[dict[str, Any]] = []
    body = b""
    while len(body) < size or len(txs) < 3:
        category, sub, side = _CATEGORIES[len(txs) % len(_CATEGORIES)]
        tx: dict[str, Any] = {
            "TransactionId": f"tx-{rng.getrandbits(32):08x}",
            "AccountId": f"acct-{rng.randint(1, 3)}",
            "Description": f"{sub.upper()} {rng.randint(100, 999)}",
            "Category": category,
            "SubCategory": sub,
            "Balance": Decimal(rng.randint(-50_000, 900_000)) / 100,
            "Date": f"2022-05-{rng.randint(1, 31):02d}",
        }
        amount = Decimal(rng.randint(100, 300_000)) / 100
        tx[side or "credit"] = amount  # the first (Payroll) as Flinks' example: "credit"
        txs.append(tx)
        body = _ENCODE({"HttpStatusCode": 200, "Transactions": txs})
    return _ENCODE({"HttpStatusCode": 200, "LoginId": None, "Transactions": txs})


def custom_payload(names: list[str], detail: list[str], variant: int) -> bytes:
    """The 200 of the custom attributes ``POST``: the card holding exactly ``names``
    (valued as in the packages' cards), with ``detail``'s transactions."""
    every: dict[str, Any] = {}
    for package in _PACKAGES:
        every.update(_card(package, variant))
    card: dict[str, Any] = {"Id": f"00000000-0000-4000-8000-{variant:012d}"}
    card.update((name, every.get(name)) for name in names)
    if detail:
        card["AttributesDetail"] = _detail(random.Random(f"detail:{variant}"), detail)
    return _ENCODE({"HttpStatusCode": 200, "Card": card})


def categories_payload() -> bytes:
    """``GET /Categories/{CA|US}``: the primary categories and their sub-categories."""
    groups: dict[str, list[str]] = {}
    for category, sub, _ in _CATEGORIES:
        groups.setdefault(category, []).append(sub)
    return _ENCODE(
        [
            {
                "PrimaryCategoryName": category,
                "Description": f"{category} transactions",
                "SubCategories": [{"SubCategoryName": s, "Description": s} for s in subs],
            }
            for category, subs in groups.items()
        ]
    )


def library_payload(business: bool) -> bytes:
    """``GET /attributes/library`` (or ``/business``): each package's names, described."""
    packages = [
        p for p in _PACKAGES if ("Business" in p) == business and not p.startswith("GetAll")
    ]
    return _ENCODE(
        [
            {
                "Category": package.removeprefix("Get").removesuffix("Attributes"),
                "Attributes": [
                    {"Name": name, "Description": name.replace("_", " ")}
                    for name in card_names(package)
                ],
            }
            for package in packages
        ]
    )


def _package(name: str) -> Callable[[int, int], bytes]:
    return lambda size, variant: attributes_payload(name, variant)


#: the emulator's payload of each Enrich endpoint (by Flinks name): ``(size, variant)``
ATTRIBUTE_PAYLOADS: dict[str, Callable[[int, int], bytes]] = {
    **{name: _package(name) for name in _PACKAGES},
    "GetCategorization": categorization_payload,
    "Attributes": _package("GetAllAttributes"),  # the custom POST's, made per request
}
