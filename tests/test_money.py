"""Money is exact: Decimal from the digits Flinks sent, typed and raw alike. And the money
rule (flinks_async._money): a money field holds a finite Decimal of sane size or None;
anything else is a DecodeError naming the model and the field, never retried, on every
answer (not only the drift sample). Answers are served verbatim by the emulator."""

from __future__ import annotations

import logging
import pathlib
from decimal import Decimal
from typing import Any

import anyio
import msgspec
import pytest

from flinks_async import DecodeError, FlinksClient, _schema
from flinks_async.testing import Emulator

from .conftest import fast_client
from .test_cli import CLI, _env

pytestmark = pytest.mark.anyio

# A GetAccountsDetail answer whose numbers a float would not keep: 0.1 + 0.2, a balance sent
# as a string with a trailing zero, 20 significant digits, and a ratio (a float, not money).
DETAIL = b"""{"HttpStatusCode": 200, "RequestId": "r", "Accounts": [{
  "Id": "a1", "Title": "Chequing", "OverdraftLimit": 500,
  "Balance": {"Available": "1234.50", "Current": 12345678901234567.123, "Limit": null},
  "EftEligibleRatio": 0.5,
  "Transactions": [
    {"Id": "t1", "Date": "2019/05/09", "Debit": 0.1, "Credit": null, "Balance": 100.10},
    {"Id": "t2", "Date": "2019/05/10", "Debit": 0.2, "Credit": null, "Balance": 99.90}
  ]}]}"""


async def test_money_decodes_exactly(client: FlinksClient, emu: Emulator, login: str) -> None:
    emu.set_login(login, pending=1, payloads={"GetAccountsDetail": DETAIL})
    detail = await client.accounts_detail(login)
    (account,) = detail.accounts or []
    assert account.balance is not None and account.transactions is not None
    debits = [t.debit for t in account.transactions]
    assert all(isinstance(d, Decimal) for d in debits)
    assert sum(d for d in debits if d is not None) == Decimal("0.3")  # not 0.30000000000000004
    assert str(account.balance.available) == "1234.50"  # the trailing zero is kept
    assert account.balance.current == Decimal("12345678901234567.123")  # 20 digits, exact
    assert account.overdraft_limit == Decimal(500)
    assert account.transactions[0].balance == Decimal("100.10")
    assert isinstance(account.eft_eligible_ratio, float)  # a ratio, not money


async def test_pull_writes_the_digits_flinks_sent(
    emu: Emulator, login: str, tmp_path: pathlib.Path
) -> None:
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": DETAIL})
    (tmp_path / "ids.txt").write_text(login + "\n")
    proc = await anyio.run_process(
        [
            *CLI,
            "pull",
            "--login-ids",
            "ids.txt",
            "--out",
            "out.jsonl",
            "--endpoint",
            "accounts-detail",
            "--poll-interval",
            "0.01",
        ],
        env=_env(emu, tmp_path),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    line = (tmp_path / "out.jsonl").read_bytes()
    for digits in (b'"1234.50"', b"12345678901234567.123", b"100.10", b"0.1,", b"0.2,"):
        assert digits in line
    data = msgspec.json.decode(line)["data"]
    assert data == msgspec.json.decode(DETAIL)  # the payload as sent, nothing dropped


def _numeric_fields() -> set[tuple[str, str, str]]:
    """(model, field, type) of every numeric field of every exported model."""
    import flinks_async

    found = set()
    for name in flinks_async.__all__:
        model = getattr(flinks_async, name)
        if not (isinstance(model, type) and issubclass(model, msgspec.Struct)):
            continue
        for f in msgspec.structs.fields(model):
            text = str(f.type).replace("decimal.", "").replace(" | None", "")
            if text in ("Decimal", "float", "int", "int | str"):
                found.add((name, f.name, text))
    return found


def test_the_models_page_lists_every_numeric_field_with_its_type() -> None:
    page = (pathlib.Path(__file__).parent.parent / "docs" / "models.md").read_text()
    listed = set()
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if len(cells) == 4 and cells[1].startswith("`") and "(`" in cells[1]:
            field = cells[1].split("`")[1]
            kind = cells[2].strip("`").replace("\\|", "|")
            for model in cells[0].split(", "):
                listed.add((model.strip("`"), field, kind))
    assert listed == _numeric_fields()


#: what was sent in Balance.Current, as raw JSON, and how the error names it
HOSTILE = [
    (b'"NaN"', "is NaN"),
    (b'"sNaN"', "is sNaN"),
    (b'"nan"', "is NaN"),
    (b'"Infinity"', "is Infinity"),
    (b'"-Infinity"', "is -Infinity"),
    (b'"inf"', "is Infinity"),
    (b"1e999999999", "digits before the point"),
    (b'"1e999999999"', "digits before the point"),
    (b"-1E+45", "digits before the point"),
    (b'"12,50"', "is a str, not a number"),
    (b"true", "is true, not a number"),
    (b'"N/A"', "is a str, not a number"),
    (b'{"Amount": 1}', "is a dict, not a number"),
]


def detail(current: bytes, *, debit: bytes = b"12.50") -> bytes:
    """A GetAccountsDetail answer with ``current`` as Balance.Current (raw JSON text)."""
    return (
        b'{"HttpStatusCode":200,"Accounts":[{"Id":"a1","Title":"Chequing",'
        b'"Balance":{"Available":10,"Current":' + current + b',"Limit":null},'
        b'"Transactions":[{"Id":"t1","Debit":' + debit + b',"Credit":null,"Balance":1}]}]}'
    )


@pytest.mark.parametrize(("sent", "named"), HOSTILE, ids=[h[0].decode() for h in HOSTILE])
@pytest.mark.parametrize("options", [{}, {"strict_schema": True}, {"keep_extra": True}])
async def test_money_that_is_not_a_finite_number_is_a_decode_error_naming_the_field(
    emu: Emulator, login: str, sent: bytes, named: str, options: dict[str, Any]
) -> None:
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(sent)})
    async with fast_client(emu, **options) as client:
        with pytest.raises(DecodeError) as info:
            await client.accounts_detail(login)
    error = info.value
    assert type(error) is DecodeError  # not a SchemaDriftError, whatever the settings
    assert error.field == "Balance.Current" and not error.retryable
    assert named in str(error) and "$.Accounts[0].Balance.Current" in str(error)
    assert error.endpoint == "GetAccountsDetail" and error.login_id == login
    assert b"12,50" not in str(error).encode()  # what was sent is described, not quoted
    assert emu.counts["GetAccountsDetail"] == 1  # never retried: the same bytes would fail


async def test_the_rule_holds_after_the_drift_sample_is_used_up(
    emu: Emulator, login_ids: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: after the first answers drift is no longer checked, and a "12,50"
    read as None with nothing reported. The money rule does not depend on the sample."""
    monkeypatch.setattr(_schema, "SAMPLE", 2)
    good, bad = login_ids[:5], login_ids[5:7]
    for login in good:
        emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(b"1234.50")})
    emu.set_login(bad[0], pending=0, payloads={"GetAccountsDetail": detail(b'"12,50"')})
    emu.set_login(bad[1], pending=0, payloads={"GetAccountsDetail": detail(b'"NaN"')})
    async with fast_client(emu) as client:
        for login in good:
            result = await client.accounts_detail(login)
            assert result.accounts and result.accounts[0].balance
            assert result.accounts[0].balance.current == Decimal("1234.50")
        for login in bad:
            with pytest.raises(DecodeError) as info:
                await client.accounts_detail(login)
            assert info.value.field == "Balance.Current"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (b"1234.50", Decimal("1234.50")),
        (b'"1234.50"', Decimal("1234.50")),
        (b"-0.01", Decimal("-0.01")),
        (b"9.99E+29", Decimal("9.99E+29")),
        (b'"1e-999999999"', Decimal("1e-999999999")),
        (b"null", None),
    ],
)
async def test_finite_money_and_null_are_accepted(
    emu: Emulator, login: str, sent: bytes, expected: Decimal | None
) -> None:
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(sent)})
    async with fast_client(emu) as client:
        result = await client.accounts_detail(login)
    assert result.accounts and result.accounts[0].balance
    current = result.accounts[0].balance.current
    assert current == expected
    if current is not None:
        assert (current * 100 + 1).is_finite() and current >= current - 1  # arithmetic works


async def test_every_money_field_of_investments_is_checked(emu: Emulator, login: str) -> None:
    """Nested lists too: a position's MarketValue and a security's Price."""
    answer: dict[str, Any] = {
        "HttpStatusCode": 200,
        "Accounts": [
            {
                "Id": "i1",
                "Cash": 10,
                "Positions": [{"SecurityId": "s1", "Quantity": 3, "MarketValue": 30}],
            }
        ],
        "Securities": [{"Id": "s1", "Symbol": "XYZ", "Price": 10}],
    }
    for where, path in [("position", "Position.MarketValue"), ("security", "Security.Price")]:
        bad = msgspec.json.decode(msgspec.json.encode(answer))
        if where == "position":
            bad["Accounts"][0]["Positions"][0]["MarketValue"] = "Infinity"
        else:
            bad["Securities"][0]["Price"] = "NaN"
        emu.set_login(login, pending=0, payloads={"Investments": msgspec.json.encode(bad)})
        async with fast_client(emu) as client:
            with pytest.raises(DecodeError) as info:
                await client.investments(login)
        assert info.value.field == path
    emu.set_login(login, pending=0, payloads={"Investments": msgspec.json.encode(answer)})
    async with fast_client(emu) as client:
        ok = await client.investments(login)
    assert ok.accounts and ok.accounts[0].positions
    assert ok.accounts[0].positions[0].market_value == Decimal(30)


async def test_in_a_fan_out_the_login_ends_in_its_decode_error_and_nothing_is_logged_as_unexpected(
    emu: Emulator, login_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    logins = login_ids[:6]
    for login in logins:
        emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(b"5")})
    emu.set_login(logins[2], pending=0, payloads={"GetAccountsDetail": detail(b'"Infinity"')})
    with caplog.at_level(logging.INFO, logger="flinks_async"):
        async with fast_client(emu) as client, client.many("accounts-detail", logins) as results:
            ended = {r.login_id: r async for r in results}
    assert len(ended) == 6
    failed = [r for r in ended.values() if not r.ok]
    assert [r.login_id for r in failed] == [logins[2]]
    assert isinstance(failed[0].error, DecodeError) and failed[0].error.field == "Balance.Current"
    assert "unexpected" not in caplog.text and "Traceback" not in caplog.text
    assert emu.counts["GetAccountsDetail"] == 6


async def test_raw_answers_are_the_bytes_as_sent(emu: Emulator, login: str) -> None:
    """raw=True is the escape hatch: the bytes, unchecked (documented)."""
    body = detail(b'"NaN"')
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": body})
    async with fast_client(emu) as client:
        raw = await client.accounts_detail(login, raw=True)
    assert b'"Current":"NaN"' in raw
