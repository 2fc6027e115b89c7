"""Money is exact: Decimal from the digits Flinks sent, typed and raw alike."""

from __future__ import annotations

import pathlib
from decimal import Decimal

import anyio
import msgspec
import pytest

from flinks_async import FlinksClient
from flinks_async.testing import Emulator

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
