"""A corpus of Flinks answers in the shapes real sources show, decoded end to end.

Each sample below is written here, with values of our own, in the exact shape of an
answer captured or written by someone else (the source is cited above each). The
emulator answers it verbatim (``set_login(payloads=...)``) and the client fetches it over
HTTP like any answer: what is checked is what a user reads, field by field.

Sources (read with the search tool, never copied):

* ``flinkshahs/flinks-training-demo``, ``ClientApp/src/app/services/investments.service.ts``:
  a 2020 sandbox ``/Investments`` 200 (the only real one found);
* ``Universal-Connect-Project/ucw-app``, ``packages/flinks-adapter/src/test/testData/``:
  raw sandbox answers of ``/Authorize`` (200 and 203), ``/GetAccountsDetail``,
  ``/GetStatements``;
* ``mmroz/flinks`` (Ruby gem), ``test/test_flinks.rb``: ``/GetAccountsSummary`` with
  ``Tag`` and ``Links``, a ``Holder`` holding only a name;
* ``neofinancial/node-flinks``, ``src/lib/flinks-codes.ts`` and ``src/types.ts``: the
  FlinksCodes and their meanings, ``Transaction.Code`` as ``string | null``;
* docs.flinks.com (the API reference's response fields): ``Transaction.Code`` a number or
  null, ``Login.LastRefresh`` in UTC.
"""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from flinks_async import (
    AccessDeniedError,
    DecodeError,
    Institution,
    LoginError,
    MFAError,
    MFARequiredError,
    NoTransactionsError,
    SchemaDriftError,
    SecurityChallenge,
    Statement,
)
from flinks_async.testing import Emulator

from .conftest import fast_client

pytestmark = pytest.mark.anyio

LOGIN_SNAPSHOT = {
    "Username": "corpus_user",
    "IsScheduledRefresh": False,
    "LastRefresh": "2026-02-11T09:15:02.4417311",
    "Type": "Personal",
    "Id": "0d6f3c2a-5b1e-4e0f-9a7d-2c4b6e8f1a3d",
}


def encode(obj: dict[str, Any]) -> bytes:
    return msgspec.json.encode(obj)


# -- /Investments: flinkshahs/flinks-training-demo, investments.service.ts ---------------
# Top level Accounts/Securities/Value/Cash/HttpStatusCode/Login/Institution{Id,Name}/
# RequestId; positions and transactions refer to a security by SecurityId, and some ids
# name no listed security (as in the source); an account with null Positions/Transactions.
INVESTMENTS = encode(
    {
        "Accounts": [
            {
                "Id": "7c1e9a52-0b3d-4f6e-8a21-5d4c3b2a1f00",
                "FullAccountId": "non-registered-908172:cash:cad",
                "AccountId": "908172",
                "Name": "Corpus Growth",
                "Type": "cash",
                "Registered": False,
                "Currency": "CAD",
                "Cash": 250.10,
                "AccountValue": 1371.35,
                "CurrencyValue": 1371.35,
                "Positions": [
                    {
                        "Id": "p-01",
                        "Category": "Canadian Stocks",
                        "Class": "equity",
                        "BookValue": 800.00,
                        "Quantity": 40,
                        "MarketValue": 742.80,
                        "GainAmount": -57.20,
                        "GainCurrencyAmount": -57.20,
                        "GainPercent": -0.07,
                        "Currency": "CAD",
                        "SecurityId": "sec-shop",
                    },
                    {
                        "Id": "p-02",
                        "Category": "US Stocks",
                        "Class": "equity",
                        "BookValue": 300.00,
                        "Quantity": 2,
                        "MarketValue": 378.45,
                        "GainAmount": 78.45,
                        "GainCurrencyAmount": 78.45,
                        "GainPercent": 0.26,
                        "Currency": "CAD",
                        "SecurityId": "sec-msft",
                    },
                    {
                        "Id": "p-03",
                        "Category": "US Stocks",
                        "Class": "equity",
                        "BookValue": 100.00,
                        "Quantity": 1,
                        "MarketValue": 99.99,
                        "GainAmount": -0.01,
                        "GainCurrencyAmount": -0.01,
                        "GainPercent": 0.00,
                        "Currency": "CAD",
                        "SecurityId": "sec-delisted",  # not in Securities, as in the source
                    },
                ],
                "Transactions": [
                    {
                        "Id": "t-01",
                        "Date": "2026-01-30",
                        "Type": "sell",
                        "Description": "Sell 2 MSFT",
                        "Quantity": -2,
                        "Fee": 0.00,
                        "Amount": 710.20,
                        "SecurityId": "sec-msft",
                    },
                    {
                        "Id": "t-02",
                        "Date": "2026-02-02",
                        "Type": "buy",
                        "Description": "Buy 10 SHOP",
                        "Quantity": 10,
                        "Fee": 4.95,
                        "Amount": -1850.00,
                        "SecurityId": "sec-shop",
                    },
                ],
            },
            {
                "Id": "7c1e9a52-0b3d-4f6e-8a21-5d4c3b2a1f01",
                "FullAccountId": "non-registered-908173:cash:usd",
                "AccountId": "908173",
                "Name": "Corpus USD",
                "Type": "cash",
                "Registered": False,
                "Currency": "USD",
                "Cash": 75.00,
                "AccountValue": 102.46,
                "CurrencyValue": 75.00,
                "Positions": None,
                "Transactions": None,
            },
        ],
        "Securities": [
            {
                "Id": "sec-shop",
                "Name": "Shopify Inc",
                "Symbol": "SHOP.DEMO",
                "Type": "equity",
                "Price": 18.57,
                "Date": "2026-02-11T21:00:00.1230000Z",
                "Aliases": ["Shopify Inc"],
                "Currency": "CAD",
                "CUSIP": "82509L107",
                "ISIN": None,
            },
            {
                "Id": "sec-msft",
                "Name": "Microsoft Corp",
                "Symbol": "MSFT.DEMO",
                "Type": "equity",
                "Price": 189.225,
                "Date": "2026-02-11T21:00:00.1180000Z",
                "Aliases": ["Microsoft Corp"],
                "Currency": "USD",
                "CUSIP": "594918104",
                "ISIN": "US5949181045",
            },
        ],
        "Value": 1473.81,
        "Cash": 325.10,
        "HttpStatusCode": 200,
        "Login": {**LOGIN_SNAPSHOT, "Type": None},
        "Institution": {"Id": 999999999, "Name": "FlinksInvestment"},
        "RequestId": "5a0b7c3d-1e2f-4a5b-8c6d-7e8f9a0b1c2d",
    }
)


async def test_investments_in_the_real_shape(emu: Emulator, login: str) -> None:
    emu.set_login(login, pending=1, payloads={"Investments": INVESTMENTS})
    async with fast_client(emu) as client:
        inv = await client.investments(login)
        drift = client.schema_drift
    assert emu.counts["Investments"] == 2  # one 202, one 200
    assert inv.value == Decimal("1473.81") and inv.cash == Decimal("325.1")
    assert isinstance(inv.institution, Institution)
    assert inv.institution.id == 999999999 and inv.institution_display_name == "FlinksInvestment"
    assert inv.login is not None and inv.login.username == "corpus_user"
    assert inv.login.last_refresh_at == dt.datetime(2026, 2, 11, 9, 15, 2, 441731, dt.UTC)

    assert inv.accounts is not None and len(inv.accounts) == 2
    growth, usd = inv.accounts
    assert (growth.account_id, growth.type, growth.registered) == ("908172", "cash", False)
    assert growth.cash == Decimal("250.10") and growth.account_value == Decimal("1371.35")
    assert usd.currency_value == Decimal("75.00") and usd.positions is None
    assert usd.transactions is None

    assert growth.positions is not None
    symbols = [p.security.symbol if p.security else None for p in growth.positions]
    assert symbols == ["SHOP.DEMO", "MSFT.DEMO", None]  # the third names no listed security
    shop = growth.positions[0]
    assert (shop.category, shop.class_) == ("Canadian Stocks", "equity") and shop.quantity == 40
    assert shop.market_value == Decimal("742.80") and shop.gain_amount == Decimal("-57.20")
    assert shop.book_value == Decimal("800.00") and shop.gain_percent == pytest.approx(-0.07)
    assert shop.security is not None and shop.security.cusip == "82509L107"
    assert shop.security.isin is None and shop.security.aliases == ["Shopify Inc"]
    assert growth.positions[1].security is not None
    assert growth.positions[1].security.price == Decimal("189.225")

    assert growth.transactions is not None
    sell, buy = growth.transactions
    assert sell.quantity == -2 and sell.amount == Decimal("710.20") and sell.fee == 0
    assert sell.security is not None and sell.security.symbol == "MSFT.DEMO"
    assert buy.fee == Decimal("4.95") and buy.parsed_date == dt.date(2026, 2, 2)
    assert sum((t.amount or Decimal(0) for t in growth.transactions), Decimal(0)) == Decimal(
        "-1139.80"
    )

    assert inv.dangling_security_ids() == ["sec-delisted"]
    assert drift == {"Investments": {"'SecurityId' (not in Securities)": 1}}


async def test_the_old_investments_wrapper_is_drift_not_an_empty_success(
    emu: Emulator, login: str
) -> None:
    """The integration guide's ``{"Investments": [{"Accounts": ...}]}`` has no real source:
    such an answer is reported, never returned as "no holdings"."""
    wrapper = encode({"HttpStatusCode": 200, "Investments": [{"Accounts": [{"Id": "a"}]}]})
    emu.set_login(login, pending=0, payloads={"Investments": wrapper})
    async with fast_client(emu) as client:
        with pytest.raises(SchemaDriftError) as info:
            await client.investments(login)
    assert ("Investments", "'Investments'") in info.value.drift
    assert emu.counts["Investments"] == 1


# -- /GetAccountsDetail: ucw-app accountsDetails.ts ---------------------------------------
# Transactions first in each account, Code null, Debit/Credit numbers or null,
# LastFourDigits/AccountType null, InstitutionName/InstitutionId/Institution (a string).
def accounts_detail(holder: Any = None, code: Any = None) -> bytes:
    return encode(
        {
            "HttpStatusCode": 200,
            "Accounts": [
                {
                    "Transactions": [
                        {
                            "Date": "2026-02-10",
                            "Code": code,
                            "Description": "PAYROLL - Corpus Inc",
                            "Debit": None,
                            "Credit": 2100.55,
                            "Balance": 4310.05,
                            "Id": "tx-0001",
                        },
                        {
                            "Date": "2026-02-09",
                            "Code": None,
                            "Description": "Grocery",
                            "Debit": 89.5,
                            "Credit": None,
                            "Balance": 2209.5,
                            "Id": "tx-0002",
                        },
                    ],
                    "TransitNumber": "40021",
                    "InstitutionNumber": "777",
                    "OverdraftLimit": 250.5,
                    "Title": "Everyday Chequing",
                    "AccountNumber": "5550123",
                    "LastFourDigits": None,
                    "Balance": {"Available": 4560.55, "Current": 4310.05, "Limit": None},
                    "Category": "Operations",
                    "Type": "Chequing",
                    "Currency": "CAD",
                    "Holder": holder
                    if holder is not None
                    else {
                        "Name": "Alex Corpus",
                        "Address": {
                            "CivicAddress": "100 King Street W",
                            "City": "TOR",
                            "Province": "ON",
                            "PostalCode": "M5X 1A9",
                            "POBox": None,
                            "Country": "CA",
                        },
                        "Email": "alex@example.com",
                        "PhoneNumber": "4165550199",
                    },
                    "AccountType": None,
                    "Id": "acct-0001",
                }
            ],
            "InstitutionName": "FlinksCapital",
            "Login": LOGIN_SNAPSHOT,
            "InstitutionId": 14,
            "Institution": "FlinksCapital",
            "RequestId": "6b1c8d4e-2f3a-4b5c-9d6e-8f9a0b1c2d3e",
        }
    )


async def test_accounts_detail_field_by_field(emu: Emulator, login: str) -> None:
    emu.set_login(login, pending=2, payloads={"GetAccountsDetail": accounts_detail()})
    async with fast_client(emu) as client:
        detail = await client.accounts_detail(login)
        assert client.schema_drift == {}
    assert detail.institution == "FlinksCapital" and detail.institution_id == 14
    assert detail.institution_name == "FlinksCapital"
    assert detail.login is not None and detail.login.type == "Personal"
    assert detail.accounts is not None
    (account,) = detail.accounts
    assert (account.title, account.transit_number, account.last_four_digits) == (
        "Everyday Chequing",
        "40021",
        None,
    )
    assert account.overdraft_limit == Decimal("250.5")
    assert account.balance is not None and account.balance.available == Decimal("4560.55")
    assert account.balance.limit is None
    assert account.holder is not None and account.holder.address is not None
    assert account.holder.address.postal_code == "M5X 1A9" and account.holder.address.po_box is None
    assert account.transactions is not None
    pay, grocery = account.transactions
    assert pay.credit == Decimal("2100.55") and pay.debit is None and pay.code is None
    assert grocery.debit == Decimal("89.5") and grocery.parsed_date == dt.date(2026, 2, 9)


@pytest.mark.parametrize("code", [7, "7", "POS"])
async def test_transaction_code_is_a_number_or_text(emu: Emulator, login: str, code: Any) -> None:
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": accounts_detail(code=code)})
    async with fast_client(emu) as client:
        detail = await client.accounts_detail(login)
    assert detail.accounts and detail.accounts[0].transactions
    assert detail.accounts[0].transactions[0].code == code


async def test_a_holder_sent_as_a_string_costs_nothing_else(emu: Emulator, login: str) -> None:
    """One odd nested value: the answer decodes once (no re-send), the holder's string is
    kept on the account's .extra, every other field reads as usual."""
    body = accounts_detail(holder="Alex Corpus")
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": body})
    async with fast_client(emu) as client:
        detail = await client.accounts_detail(login)
        assert client.schema_drift == {"Account": {"'Holder' (str)": 1}}
    assert emu.counts["GetAccountsDetail"] == 1
    assert detail.accounts is not None
    account = detail.accounts[0]
    assert account.holder is None and account.extra == {"Holder": "Alex Corpus"}
    assert account.balance is not None and account.balance.current == Decimal("4310.05")
    assert account.transactions is not None and len(account.transactions) == 2


# -- /GetAccountsSummary: mmroz/flinks test_flinks.rb ------------------------------------
# Tag (the caller's correlation string) and Links at the top; a Holder with only a Name;
# EftEligibleRatio / ETransferEligibleRatio; Login of a business.
SUMMARY = encode(
    {
        "HttpStatusCode": 200,
        "Accounts": [
            {
                "EftEligibleRatio": 0.5,
                "ETransferEligibleRatio": 0,
                "Title": "Business Chequing",
                "AccountNumber": "7654321",
                "LastFourDigits": None,
                "Balance": {"Available": 999.99, "Current": 1000.01, "Limit": None},
                "Category": "Operations",
                "Type": "Chequing",
                "Currency": "CAD",
                "Holder": {"Name": "Corpus Holdings Ltd"},
                "AccountType": "Business",
                "Id": "acct-biz-1",
            }
        ],
        "Links": [{"rel": "AccountsDetail", "href": "/GetAccountsDetail", "example": None}],
        "Tag": "userId=corpus-42",
        "InstitutionName": "BMO",
        "Login": {**LOGIN_SNAPSHOT, "Type": "Business"},
        "InstitutionId": 1,
        "Institution": "BMO",
        "RequestId": "7c2d9e5f-3a4b-4c5d-8e6f-9a0b1c2d3e4f",
    }
)


async def test_accounts_summary_keeps_tag_and_links(emu: Emulator, login: str) -> None:
    emu.set_login(login, pending=1, payloads={"GetAccountsSummary": SUMMARY})
    async with fast_client(emu) as client:
        summary = await client.accounts_summary(login)
        assert client.schema_drift == {}
    assert summary.tag == "userId=corpus-42"
    assert summary.links and summary.links[0].href == "/GetAccountsDetail"
    assert summary.institution_id == 1 and summary.institution_display_name == "BMO"
    assert summary.accounts is not None
    account = summary.accounts[0]
    assert account.holder is not None and account.holder.name == "Corpus Holdings Ltd"
    assert account.holder.address is None and account.account_type == "Business"
    assert account.eft_eligible_ratio == 0.5 and account.e_transfer_eligible_ratio == 0
    assert account.balance is not None and account.balance.current == Decimal("1000.01")


# -- /GetStatements: ucw-app statements.ts -----------------------------------------------
# StatementsByAccount (some with no statements), Login, InstitutionName/Id, Institution.
PDF = b"%PDF-1.4 corpus statement %%EOF"
STATEMENTS = encode(
    {
        "HttpStatusCode": 200,
        "StatementsByAccount": [
            {"AccountNumber": "CORP0001", "Statements": []},
            {
                "AccountNumber": "420024******9999",
                "Statements": [
                    {
                        "UniqueId": "stmt-1",
                        "FileType": "PDF",
                        "Base64Bytes": base64.b64encode(PDF).decode(),
                    }
                ],
            },
        ],
        "InstitutionName": "FlinksCapital",
        "Login": LOGIN_SNAPSHOT,
        "InstitutionId": 14,
        "Institution": "FlinksCapital",
        "RequestId": "8d3e0f6a-4b5c-4d6e-9f0a-0b1c2d3e4f5a",
    }
)


async def test_statements_with_login_and_institution(emu: Emulator, login: str) -> None:
    emu.set_login(login, pending=1, payloads={"GetStatements": STATEMENTS})
    async with fast_client(emu) as client:
        stm = await client.statements(login)
    assert stm.login is not None and stm.login.username == "corpus_user"
    assert stm.institution_id == 14 and stm.institution == "FlinksCapital"
    assert stm.statements_by_account is not None
    empty, card = stm.statements_by_account
    assert empty.account_number == "CORP0001" and empty.statements == []
    assert card.statements is not None and card.statements[0].content() == PDF


def test_a_statement_that_is_not_base64_is_a_library_error() -> None:
    with pytest.raises(DecodeError, match="stmt-9: Base64Bytes is not valid base64"):
        Statement(unique_id="stmt-9", base64_bytes="%%% not base64").content()


# -- /Authorize: ucw-app authorize-200.ts and authorize-203.ts -----------------------------
async def test_authorize_200_in_the_sandbox_shape(emu: Emulator, login: str) -> None:
    rid = "9e4f1a7b-5c6d-4e7f-8a9b-1c2d3e4f5a6b"
    answer = {
        "HttpStatusCode": 200,
        "Links": [
            {"rel": "AccountsDetail", "href": "/GetAccountsDetail", "example": None},
            {"rel": "Statements", "href": "/GetStatements", "example": None},
        ],
        "InstitutionName": "FlinksCapital",
        "Login": {**LOGIN_SNAPSHOT, "Id": login},
        "InstitutionId": 14,
        "Institution": "FlinksCapital",
        "RequestId": rid,
    }
    emu.set_login(login, pending=0, payloads={"Authorize": encode(answer)})
    async with fast_client(emu) as client:
        auth = await client.authorize(login)
        assert auth.request_id == rid and auth.institution_id == 14
        assert auth.links is not None and [link.rel for link in auth.links] == [
            "AccountsDetail",
            "Statements",
        ]
        assert auth.login is not None and auth.login.id == login
        detail = await client.accounts_detail(login, request_id=rid)  # the session works
    assert detail.accounts


async def test_authorize_203_raises_mfa_required_with_the_questions(
    emu: Emulator, login: str
) -> None:
    rid = "0f5a2b8c-6d7e-4f8a-9b0c-2d3e4f5a6b7c"
    answer = {
        "HttpStatusCode": 203,
        "Links": [{"rel": "Authorization", "href": "/Authorize", "example": None}],
        "SecurityChallenges": [
            {"Type": "QuestionAndAnswer", "Prompt": "Which city were you born in?"},
            {"Type": "MultipleChoice", "Prompt": "Pick your bank", "Iterables": ["A", "B"]},
        ],
        "InstitutionName": "FlinksCapital",
        "InstitutionId": 14,
        "Institution": "FlinksCapital",
        "RequestId": rid,
    }
    emu.set_login(login, payloads={"Authorize": (203, encode(answer))})
    async with fast_client(emu) as client:
        with pytest.raises(MFARequiredError) as info:
            await client.investments(login)
    err = info.value
    assert isinstance(err, MFAError) and err.http_status == 203 and err.request_id == rid
    assert err.challenges == [
        SecurityChallenge(type="QuestionAndAnswer", prompt="Which city were you born in?"),
        SecurityChallenge(type="MultipleChoice", prompt="Pick your bank", iterables=["A", "B"]),
    ]
    assert "2 MFA question(s)" in str(err)
    assert emu.counts["Authorize"] == 1  # not retried


# -- error envelopes: node-flinks flink-codes.ts ------------------------------------------
@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("INVALID_USERNAME", 401, LoginError),
        ("INVALID_PASSWORD", 401, LoginError),
        ("QUESTION_NOT_FOUND", 400, MFAError),
        ("INVALID_SECURITY_RESPONSE", 401, MFAError),
        ("UNKNOWN_CHALLENGE_KEY", 400, MFAError),
        ("SECURITYRESPONSES_INCOMPLETE", 400, MFAError),
        ("NO_TRANSACTION", 400, NoTransactionsError),
    ],
)
async def test_documented_codes_have_their_place(
    emu: Emulator, login: str, code: str, status: int, error: type[Exception]
) -> None:
    envelope = {"HttpStatusCode": status, "Message": f"{code} said Flinks", "FlinksCode": code}
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": (status, encode(envelope))})
    async with fast_client(emu) as client:
        with pytest.raises(error) as info:
            await client.accounts_detail(login)
    assert f"{code} said Flinks" in str(info.value)
    assert emu.counts["GetAccountsDetail"] == 1  # the caller must act: not retried


async def test_unauthorized_keeps_flinks_message(emu: Emulator, login: str) -> None:
    """UNAUTHORIZED also means "the institution did not authorize the card": the message
    Flinks sent is what the user sees, not a guess about API keys."""
    message = "The card was not authorized by the institution"
    envelope = {"HttpStatusCode": 401, "Message": message, "FlinksCode": "UNAUTHORIZED"}
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": (401, encode(envelope))})
    async with fast_client(emu) as client:
        with pytest.raises(AccessDeniedError) as info:
            await client.accounts_detail(login)
    assert info.value.message == message and message in str(info.value)
    assert "API key" not in str(info.value)
