"""Deterministic, realistic Flinks payloads of a chosen size.

A payload depends on its kind, its target size and a small ``variant`` number (the
emulator derives it from the login id), never on the clock: the same arguments always
give the same bytes. Sizes are approximate (within a few hundred bytes above the target:
transactions are added until the body reaches it). Bodies are cached, since a bulk pull
asks for the same few shapes thousands of times.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import random
import uuid
from typing import Any

import msgspec

__all__ = ["accounts_payload", "demo_login_ids", "investments_payload", "statements_payload"]

_SECURITIES = [
    ("XEQT", "iShares Core Equity ETF Portfolio", "etf", "TSX", "CA46436D1087"),
    ("VFV", "Vanguard S&P 500 Index ETF", "etf", "TSX", "CA92206C1005"),
    ("RY", "Royal Bank of Canada", "equity", "TSX", "CA7800871021"),
    ("TD", "Toronto-Dominion Bank", "equity", "TSX", "CA8911605092"),
    ("ENB", "Enbridge Inc", "equity", "TSX", "CA29250N1050"),
    ("SHOP", "Shopify Inc", "equity", "TSX", "CA82509L1076"),
    ("AAPL", "Apple Inc", "equity", "NASDAQ", "US0378331005"),
    ("ZAG", "BMO Aggregate Bond Index ETF", "etf", "TSX", "CA05573B1013"),
]
_ACCOUNT_TYPES = [
    ("tfsa", True),
    ("rrsp", True),
    ("fhsa", True),
    ("margin", False),
    ("cash", False),
]
_TX_TYPES = ["buy", "sell", "dividend", "deposit", "withdrawal", "fee", "interest"]
_MERCHANTS = [
    "PAYROLL DEPOSIT",
    "METRO #123",
    "HYDRO QUEBEC",
    "NETFLIX.COM",
    "SAQ 23045",
    "INTERAC E-TRANSFER",
    "STM OPUS",
    "AMAZON.CA",
    "RENT PAYMENT",
    "COSTCO #502",
]
_ENCODE = msgspec.json.Encoder().encode


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def demo_login_ids(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct, deterministic login ids (GUIDs)."""
    rng = random.Random(seed)
    return [_uuid(rng) for _ in range(n)]


def _securities(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """The answer's ``Securities``: the known tickers first, then made-up ones."""
    out: list[dict[str, Any]] = []
    for i in range(count):
        if i < len(_SECURITIES):
            sym, name, kind, exch, isin = _SECURITIES[i]
        else:
            sym, name, kind, exch, isin = f"X{i:04d}", f"Fund {i}", "mutualfund", "", ""
        out.append(
            {
                "Id": _uuid(rng),
                "Name": name,
                "Symbol": sym,
                "Type": kind,
                "Price": round(rng.uniform(5, 400), 4),
                "Date": "2026-03-02T21:00:00.0000000Z",
                "Aliases": [f"{sym}.TO" if exch == "TSX" else sym],
                "Currency": "usd" if exch == "NASDAQ" else "cad",
                "CUSIP": isin[2:11] or None,
                "ISIN": isin or None,
            }
        )
    return out


def _position(rng: random.Random, security: dict[str, Any]) -> dict[str, Any]:
    qty = rng.randrange(1, 500)
    book = round(qty * rng.uniform(10, 300), 2)
    market = round(book * rng.uniform(0.8, 1.4), 2)
    gain = round(market - book, 2)
    return {
        "Id": _uuid(rng),
        "Category": rng.choice(["Canadian Stocks", "US Stocks", "ETF", "Fixed Income"]),
        "Class": security["Type"],
        "BookValue": book,
        "Quantity": qty,
        "MarketValue": market,
        "GainAmount": gain,
        "GainCurrencyAmount": gain,
        "GainPercent": round(gain / book, 4),
        "Currency": security["Currency"],
        "SecurityId": security["Id"],
    }


def _inv_tx(rng: random.Random, day: dt.date, security: dict[str, Any]) -> dict[str, Any]:
    kind = rng.choice(_TX_TYPES)
    traded = kind in ("buy", "sell", "dividend")
    qty = rng.randrange(1, 200) if kind in ("buy", "sell") else 0
    price = round(rng.uniform(10, 300), 2)
    amount = round(-qty * price if kind == "buy" else qty * price or rng.uniform(5, 5000), 2)
    return {
        "Id": _uuid(rng),
        "Date": day.isoformat(),
        "Type": kind,
        "Description": f"{kind.upper()} {qty or ''} {security['Symbol'] if traded else ''}".strip(),
        "Quantity": -qty if kind == "sell" else qty,
        "Fee": 9.95 if kind in ("buy", "sell") else 0.0,
        "Amount": amount,
        "SecurityId": security["Id"] if traded else None,
    }


def _fill(target: int, base: dict[str, Any], lists: list[list[dict[str, Any]]], make: Any) -> bytes:
    """Append ``make(i)`` items round-robin to ``lists`` until ``base`` encodes to ``target``."""
    body = _ENCODE(base)
    if len(body) >= target:
        return body
    sample = len(_ENCODE([make(-k) for k in range(1, 21)])) // 20 + 1
    i = 0
    while len(body) < target:  # a few rounds: each adds the estimated shortfall
        for _ in range(max(1, (target - len(body)) // sample)):
            lists[i % len(lists)].append(make(i))
            i += 1
        body = _ENCODE(base)
    return body


@functools.lru_cache(maxsize=64)
def investments_payload(size: int = 20_000, variant: int = 0) -> bytes:
    """A 200 ``/Investments`` body of about ``size`` bytes (without ``RequestId``), in the
    shape of the real answer: top-level ``Accounts`` and ``Securities`` (listed once,
    referred to by ``SecurityId``), ``Value``, ``Cash``, ``Login``, ``Institution``. A big
    answer has more accounts (one more per 2 MB), positions and transactions, and a
    longer securities list (one more per 100 kB, up to 500)."""
    rng = random.Random(f"inv-{variant}")
    securities = _securities(rng, min(500, len(_SECURITIES) + size // 100_000))
    kinds = [_ACCOUNT_TYPES[(variant + n) % len(_ACCOUNT_TYPES)] for n in range(99)]
    accounts: list[dict[str, Any]] = []
    for n, (kind, registered) in enumerate(kinds[: 2 + variant % 3 + size // 2_000_000]):
        number = str(55500000 + rng.randrange(99999))
        currency = "usd" if n % 4 == 3 else "cad"
        positions = [_position(rng, rng.choice(securities)) for _ in range(rng.randrange(3, 9))]
        value = round(sum(float(p["MarketValue"]) for p in positions), 2)
        cash = round(rng.uniform(0, 5000), 2)
        accounts.append(
            {
                "Id": _uuid(rng),
                "FullAccountId": f"{kind}-{number}:{kind}:{currency}",
                "AccountId": number,
                "Name": f"{kind.upper()} Self-Directed",
                "Type": kind,
                "Registered": registered,
                "Currency": currency.upper(),
                "Cash": cash,
                "AccountValue": round(value + cash, 2),
                "CurrencyValue": round(value + cash, 2),
                "Positions": positions,
                "Transactions": [],
            }
        )
    base = {
        "Accounts": accounts,
        "Securities": securities,
        "Value": round(sum(a["AccountValue"] for a in accounts), 2),
        "Cash": round(sum(a["Cash"] for a in accounts), 2),
        "HttpStatusCode": 200,
        "Login": {
            "Username": "Investor",
            "IsScheduledRefresh": False,
            "LastRefresh": "2026-03-02T14:05:11.1234567",
            "Type": None,
            "Id": None,
        },
        "Institution": {"Id": 14, "Name": "FlinksCapital"},
    }
    start = dt.date(2025, 1, 2)
    lists = [x for a in accounts for x in (a["Transactions"], a["Transactions"], a["Positions"])]

    def make(i: int) -> dict[str, Any]:
        security = securities[abs(i) % len(securities)]
        if i % 3 == 2:  # every third item is a position (see ``lists``)
            return _position(rng, security)
        return _inv_tx(rng, start + dt.timedelta(days=abs(i) % 700), security)

    return _fill(size, base, lists, make)


def _bank_tx(rng: random.Random, i: int) -> dict[str, Any]:
    day = dt.date(2025, 1, 1) + dt.timedelta(days=i % 365)
    debit = round(rng.uniform(2, 400), 2) if rng.random() < 0.8 else None
    return {
        "Date": day.strftime("%Y/%m/%d"),
        "Code": None,
        "Description": rng.choice(_MERCHANTS),
        "Debit": debit,
        "Credit": None if debit else round(rng.uniform(100, 3000), 2),
        "Balance": round(rng.uniform(0, 20000), 2),
        "Id": _uuid(rng),
    }


#: the holder of every account of :func:`accounts_payload`
_HOLDER = {
    "Name": "John Doe",
    "Address": {
        "CivicAddress": "1275 Avenue des Canadiens",
        "City": "Montreal",
        "Province": "QC",
        "PostalCode": "H3B 5E8",
        "POBox": None,
        "Country": "CA",
    },
    "Email": "john@example.com",
    "PhoneNumber": "(514) 555-0101",
}


@functools.lru_cache(maxsize=64)
def accounts_payload(size: int = 20_000, variant: int = 0, transactions: bool = True) -> bytes:
    """A 200 ``/GetAccountsDetail`` (or, without transactions, ``/GetAccountsSummary``) body."""
    rng = random.Random(f"acc-{variant}")
    accounts: list[dict[str, Any]] = []
    for title, category in [
        ("Chequing", "Operations"),
        ("Savings", "Operations"),
        ("Visa", "Credits"),
    ][: 2 + variant % 2]:
        accounts.append(
            {
                "Transactions": [],
                "TransitNumber": "77777",
                "InstitutionNumber": "777",
                "OverdraftLimit": 0,
                "Title": title,
                "AccountNumber": str(rng.randrange(10**6, 10**7)),
                "LastFourDigits": None,
                "Balance": {
                    "Available": round(rng.uniform(0, 9000), 2),
                    "Current": round(rng.uniform(0, 9000), 2),
                    "Limit": None,
                },
                "Category": category,
                "Type": "Chequing" if category == "Operations" else "CreditCard",
                "Currency": "CAD",
                "Holder": _HOLDER,
                "AccountType": "Personal",
                "EftEligibleRatio": 1.0,
                "ETransferEligibleRatio": 1.0,
                "Id": _uuid(rng),
            }
        )
    base = {
        "HttpStatusCode": 200,
        "Accounts": accounts,
        "Login": {
            "Username": "Greatday",
            "IsScheduledRefresh": False,
            "LastRefresh": "2019-05-09T13:47:46.5227901",
            "Type": "Personal",
            "Id": None,
        },
        "Institution": "FlinksCapital",
        "InstitutionName": "FlinksCapital",
        "InstitutionId": 14,
    }
    if not transactions:
        return _ENCODE(base)
    return _fill(size, base, [a["Transactions"] for a in accounts], lambda i: _bank_tx(rng, i))


@functools.lru_cache(maxsize=16)
def statements_payload(size: int = 20_000, variant: int = 0) -> bytes:
    """A 200 ``/GetStatements`` body: fake PDF files, base64, about ``size`` bytes in all."""
    rng = random.Random(f"stm-{variant}")
    per_file = max(64, size // 6)
    pdf = b"%PDF-1.4\n" + bytes(rng.getrandbits(8) for _ in range(per_file * 3 // 4)) + b"\n%%EOF"
    data = base64.b64encode(pdf).decode()
    by_account = [
        {
            "AccountNumber": str(1000000 + a),
            "Statements": [
                {"UniqueId": _uuid(rng), "FileType": "PDF", "Base64Bytes": data} for _ in range(3)
            ],
        }
        for a in range(2)
    ]
    return _ENCODE(
        {
            "HttpStatusCode": 200,
            "StatementsByAccount": by_account,
            "InstitutionName": "FlinksCapital",
            "InstitutionId": 14,
            "Institution": "FlinksCapital",
        }
    )
