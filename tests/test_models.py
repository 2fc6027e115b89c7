"""Models: decoding real-shaped payloads, leniency, dates."""

from __future__ import annotations

import datetime as dt
import pathlib
from decimal import Decimal

import msgspec
import pytest

from flinks_async import (
    AccountsDetail,
    Authorization,
    Institution,
    Investments,
    Statements,
    parse_date,
    parse_datetime,
)
from flinks_async._models import decoder_for
from flinks_async.testing import accounts_payload, investments_payload, statements_payload

EXAMPLE = pathlib.Path(__file__).parent / "data" / "investments-example.json"


def test_example_investments_payload_decodes() -> None:
    inv = decoder_for(Investments).decode(EXAMPLE.read_bytes())
    assert isinstance(inv.institution, Institution) and inv.institution.name == "FlinksCapital"
    assert inv.institution_display_name == "FlinksCapital"
    assert inv.value == Decimal("25380.42") and inv.cash == Decimal("312.5")
    assert inv.accounts and inv.securities
    acct = inv.accounts[0]
    assert acct.type == "tfsa" and acct.registered is True and acct.currency == "cad"
    assert acct.positions and acct.transactions
    position = acct.positions[0]
    assert position.class_ == "etf" and position.gain_amount == Decimal("5067.92")
    assert position.security is inv.securities[0]  # resolved, not copied
    assert position.security.symbol == "XEQT" and position.security.cusip == "46436D108"
    assert position.security.price == Decimal("35.8113")
    assert acct.transactions[0].parsed_date == dt.date(2026, 1, 15)
    assert acct.transactions[0].security is inv.securities[0]
    assert acct.transactions[1].security is None and acct.transactions[1].security_id is None
    assert inv.dangling_security_ids() == []


def test_a_dangling_security_id_resolves_to_none() -> None:
    inv = decoder_for(Investments).decode(
        b'{"Accounts":[{"Positions":[{"SecurityId":"gone"},{"SecurityId":"s"}]}],'
        b'"Securities":[{"Id":"s","Symbol":"AAPL"}]}'
    )
    assert inv.accounts and inv.accounts[0].positions
    gone, there = inv.accounts[0].positions
    assert gone.security is None and there.security is not None
    assert inv.dangling_security_ids() == ["gone"]


def test_unknown_fields_ignored_nulls_and_missing_fields_tolerated() -> None:
    body = b'{"Accounts":[{"Id":"a","NewField":{"x":1},"Positions":null}],"Surprise":[1,2]}'
    inv = decoder_for(Investments).decode(body)
    assert inv.accounts and inv.accounts[0].positions is None and inv.accounts[0].id == "a"
    assert inv.accounts[0].transactions is None  # absent
    assert decoder_for(Investments).decode(b"{}") == Investments()
    with pytest.raises(msgspec.ValidationError):
        decoder_for(Investments).decode(b'{"Accounts":"oops"}')


def test_last_refresh_is_utc() -> None:
    auth = decoder_for(Authorization).decode(
        b'{"Login":{"LastRefresh":"2019-05-09T13:47:46.5227901"}}'
    )
    assert auth.login is not None
    assert auth.login.last_refresh_at == dt.datetime(2019, 5, 9, 13, 47, 46, 522790, dt.UTC)
    offset = decoder_for(Authorization).decode(
        b'{"Login":{"LastRefresh":"2019-05-09T08:47:46-05:00"}}'
    )
    assert offset.login is not None
    assert offset.login.last_refresh_at == dt.datetime(2019, 5, 9, 13, 47, 46, tzinfo=dt.UTC)


@pytest.mark.parametrize("never", ["0001-01-01T00:00:00", "0001-01-01T00:00:00.0000000"])
def test_a_login_never_refreshed_has_no_last_refresh_time(never: str) -> None:
    """Flinks sends .NET's DateTime.MinValue for a login never refreshed: not year 1."""
    auth = decoder_for(Authorization).decode(b'{"Login":{"LastRefresh":"%s"}}' % never.encode())
    assert auth.login is not None
    assert auth.login.last_refresh == never  # as sent
    assert auth.login.last_refresh_at is None


def test_numbers_sent_as_strings_are_accepted() -> None:
    d = decoder_for(AccountsDetail).decode(
        b'{"Accounts":[{"Balance":{"Current":"12.50"},"OverdraftLimit":"0"}]}'
    )
    assert d.accounts and d.accounts[0].balance is not None
    assert d.accounts[0].balance.current == 12.5


@pytest.mark.parametrize(
    "body",
    [
        b'{"RequestId":"r","Institution":"FlinksCapital","InstitutionId":14}',
        b'{"RequestId":"r","Institution":{"Id":999999999,"Name":"FlinksCapital"}}',
    ],
)
def test_authorization_accepts_both_institution_forms(body: bytes) -> None:
    auth = decoder_for(Authorization).decode(body)
    assert auth.institution_display_name == "FlinksCapital"
    assert isinstance(auth.institution, str | Institution)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-05-09T13:47:46.5227901", dt.datetime(2019, 5, 9, 13, 47, 46, 522790)),
        ("2019/05/09", dt.datetime(2019, 5, 9)),
        ("2019-05-09 13:47", dt.datetime(2019, 5, 9, 13, 47)),
        ("2019-05-09T13:47:46Z", dt.datetime(2019, 5, 9, 13, 47, 46, tzinfo=dt.UTC)),
        (
            "2019-05-09T13:47:46-05:00",
            dt.datetime(2019, 5, 9, 13, 47, 46, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        ),
        ("not a date", None),
        ("2019-13-45", None),
        (None, None),
        ("", None),
    ],
)
def test_parse_datetime_is_lenient(text: str | None, expected: dt.datetime | None) -> None:
    assert parse_datetime(text) == expected


def test_parse_date() -> None:
    assert parse_date("2025/01/02") == dt.date(2025, 1, 2)
    assert parse_date("2025-01-02T00:00:00") == dt.date(2025, 1, 2)
    assert parse_date("02/01/2025") is None


@pytest.mark.parametrize("size", [30_000, 200_000])
def test_generated_payloads_decode_into_models(size: int) -> None:
    inv = decoder_for(Investments).decode(investments_payload(size))
    assert inv.accounts and sum(len(a.transactions or ()) for a in inv.accounts) > 0
    det = decoder_for(AccountsDetail).decode(accounts_payload(size))
    assert det.accounts and det.accounts[0].holder is not None
    assert det.accounts[0].holder.address is not None
    assert all(t.parsed_date for a in det.accounts for t in a.transactions or ())
    st = decoder_for(Statements).decode(statements_payload(size))
    assert st.statements_by_account and st.statements_by_account[0].statements
    assert st.statements_by_account[0].statements[0].content().startswith(b"%PDF")
    assert abs(len(investments_payload(size)) - size) < 2_000
