"""Schema drift: nothing Flinks sends is silently lost (end to end against the emulator)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flinks_async import (
    AccountsDetail,
    Event,
    FlinksClient,
    SchemaDriftError,
    _schema,
    dump,
)
from flinks_async._decoding import ModelDecoder
from flinks_async._schema import SchemaCheck
from flinks_async.testing import (
    Emulator,
    accounts_payload,
    demo_login_ids,
    investments_payload,
    statements_payload,
)

from .conftest import fast_client

pytestmark = pytest.mark.anyio

SECRET_VALUE = "value-that-must-never-be-logged-7e1"


def detail(
    *,
    added: bool = False,
    renamed: bool = False,
    debit: object = 0.1,
    description: object = "RENT",
    null_list: bool = False,
) -> bytes:
    """A GetAccountsDetail answer with the drift asked for."""
    account: dict[str, Any] = {
        "Id": "a1",
        "Title": "Chequing",
        "Balance": {"Available": 10, ("CurrentBalance" if renamed else "Current"): "1234.50"},
        "Transactions": [
            {"Id": "t1", "Debit": debit, "Credit": None, "Code": 7, "Description": description}
        ],
    }
    if added:
        account["NewField"] = SECRET_VALUE
        account["Transactions"][0]["Category"] = {"Name": SECRET_VALUE}
    other: dict[str, Any] = {
        "Id": "a2",
        "Title": "Savings",
        "Transactions": None if null_list else [],
    }
    return msgspec.json.encode({"HttpStatusCode": 200, "Accounts": [account, other]})


@pytest.fixture(autouse=True)
def fresh_warnings() -> Iterator[None]:
    """The once-per-process WARNING set, emptied for each test."""
    _schema._WARNED.clear()
    yield
    _schema._WARNED.clear()


async def test_an_added_field_is_reported_once_by_key_never_by_value(
    emu: Emulator, login_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    events: list[Event] = []
    for login in login_ids[:3]:
        emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(added=True)})
    with caplog.at_level(logging.WARNING, logger="flinks_async"):
        async with fast_client(emu, event_hooks=[events.append]) as client:
            for login in login_ids[:3]:
                result = await client.accounts_detail(login)
                assert result.accounts and result.accounts[0].title == "Chequing"
            assert client.schema_drift == {
                "Account": {"'NewField'": 3},
                "Transaction": {"'Category'": 3},
            }
    warnings = [r.getMessage() for r in caplog.records if "schema drift" in r.getMessage()]
    assert len(warnings) == 2  # once per (model, key) and process, not per answer
    assert any("Account has 'NewField'" in w for w in warnings)
    assert SECRET_VALUE not in caplog.text
    drift_events = [e.detail for e in events if e.kind == "schema_drift"]
    assert drift_events.count("Account.'NewField'") == 3


async def test_a_renamed_field_is_reported_and_reads_none(emu: Emulator, login: str) -> None:
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(renamed=True)})
    async with fast_client(emu) as client:
        result = await client.accounts_detail(login)
        assert client.schema_drift == {"Balance": {"'CurrentBalance'": 1}}
    assert result.accounts and result.accounts[0].balance is not None
    assert result.accounts[0].balance.current is None  # what users would silently have got


async def test_a_number_sent_as_a_string_is_accepted_when_lossless(
    emu: Emulator, login: str
) -> None:
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(debit="12.50")})
    async with fast_client(emu) as client:
        result = await client.accounts_detail(login)
        assert client.schema_drift == {}
    assert result.accounts and result.accounts[0].transactions
    assert result.accounts[0].transactions[0].debit == Decimal("12.50")
    assert result.accounts[0].transactions[0].code == 7  # a number, as Flinks documents


async def test_a_value_of_the_wrong_type_is_set_aside_not_fatal(emu: Emulator, login: str) -> None:
    """One odd value that is not money (a Description of 42) does not cost the answer: the
    rest decodes, the value is kept in its transaction's .extra, the drift is reported,
    nothing re-sent. (Money that is not a number is refused: tests/test_money.py.)"""
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(description=42)})
    async with fast_client(emu) as client:
        result = await client.accounts_detail(login)
        assert client.schema_drift == {"Transaction": {"'Description' (int)": 1}}
    assert emu.counts["GetAccountsDetail"] == 1
    assert result.accounts and result.accounts[0].transactions
    odd = result.accounts[0].transactions[0]
    assert odd.description is None and odd.extra == {"Description": 42}
    assert odd.debit == Decimal("0.1") and odd.code == 7
    assert result.accounts[0].balance and result.accounts[0].balance.current == Decimal("1234.50")


async def test_strict_schema_refuses_a_value_of_the_wrong_type(emu: Emulator, login: str) -> None:
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(description=42)})
    async with fast_client(emu, strict_schema=True) as client:
        with pytest.raises(SchemaDriftError) as info:
            await client.accounts_detail(login)
    assert ("Transaction", "'Description' (int)") in info.value.drift
    assert "Description" in str(info.value)  # the path of the field that could not be read
    assert emu.counts["GetAccountsDetail"] == 1


async def test_null_where_a_list_is_expected_is_accepted_silently(
    emu: Emulator, login: str
) -> None:
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(null_list=True)})
    async with fast_client(emu) as client:
        result = await client.accounts_detail(login)
        assert client.schema_drift == {}
    assert result.accounts and result.accounts[1].transactions is None


async def test_strict_schema_raises_and_does_not_retry(emu: Emulator, login: str) -> None:
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(added=True)})
    async with fast_client(emu, strict_schema=True) as client:
        with pytest.raises(SchemaDriftError) as info:
            await client.accounts_detail(login)
    assert ("Account", "'NewField'") in info.value.drift
    assert SECRET_VALUE not in str(info.value)
    assert emu.counts["GetAccountsDetail"] == 1  # the same bytes would fail again


async def test_keep_extra_keeps_every_unknown_key_on_its_model(emu: Emulator, login: str) -> None:
    body = detail(added=True, renamed=True)
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": body})
    async with fast_client(emu, keep_extra=True) as client:
        result = await client.accounts_detail(login)
    assert result.accounts is not None
    account = result.accounts[0]
    assert account.extra == {"NewField": SECRET_VALUE}
    assert account.balance is not None and account.balance.extra == {"CurrentBalance": "1234.50"}
    assert account.transactions and account.transactions[0].extra == {
        "Category": {"Name": SECRET_VALUE}
    }
    assert result.accounts[1].extra is None  # nothing unknown there
    assert same(msgspec.json.decode(dump(result)), msgspec.json.decode(body))


async def test_only_a_sample_is_checked_by_default(
    emu: Emulator, login_ids: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_schema, "SAMPLE", 2)
    for login in login_ids[:3]:
        emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(added=True)})
    async with fast_client(emu) as client:
        for login in login_ids[:3]:
            await client.accounts_detail(login)
        assert client.schema_drift["Account"] == {"'NewField'": 2}  # the third: not read twice


def same(typed: Any, raw: Any) -> bool:
    """``typed`` (re-encoded) holds every key and number of ``raw`` (nulls read as absent;
    a number sent as a string equals the same number)."""
    if isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if v is not None}
        if isinstance(typed, dict):
            typed = {k: v for k, v in typed.items() if v is not None}
        return (
            isinstance(typed, dict)
            and typed.keys() == raw.keys()
            and all(same(typed[k], raw[k]) for k in raw)
        )
    if isinstance(raw, list):
        return (
            isinstance(typed, list)
            and len(typed) == len(raw)
            and all(same(a, b) for a, b in zip(typed, raw, strict=True))
        )
    if typed == raw:
        return True
    try:
        return Decimal(str(typed)) == Decimal(str(raw))
    except ArithmeticError:
        return False


def _mutate(value: Any, rng: random.Random) -> Any:
    """Add unknown keys here and there, and send some numbers as strings."""
    if isinstance(value, dict):
        out = {k: _mutate(v, rng) for k, v in value.items()}
        if rng.random() < 0.1:
            out[f"Drift{rng.randrange(1000)}"] = rng.choice([1.25, "x", [1, 2], {"A": None}])
        return out
    if isinstance(value, list):
        return [_mutate(v, rng) for v in value]
    if isinstance(value, float) and rng.random() < 0.2:
        return repr(value)  # a number sent as a string, losslessly
    return value


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["Investments", "GetAccountsDetail", "GetStatements"]),
    size=st.integers(2_000, 60_000),
    variant=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_raw_and_typed_describe_the_same_data(
    kind: str, size: int, variant: int, seed: int
) -> None:
    """Generated payloads, mutated: the typed value (keep_extra) re-encoded with dump()
    holds every key and every digit of the raw answer."""
    from flinks_async import Investments, Statements

    generators: dict[str, Callable[[int, int], bytes]] = {
        "Investments": investments_payload,
        "GetAccountsDetail": lambda n, v: accounts_payload(n, v, True),
        "GetStatements": statements_payload,
    }
    generate = generators[kind]
    model: type[Any] = {
        "Investments": Investments,
        "GetAccountsDetail": AccountsDetail,
        "GetStatements": Statements,
    }[kind]
    raw = msgspec.json.decode(generate(size, variant))
    body = msgspec.json.encode(_mutate(raw, random.Random(seed)))
    check = SchemaCheck(strict=False, keep_extra=True, hooks=())
    typed = check.wrap(ModelDecoder.of(model, raw=False), model, kind, None)(body)
    exact = msgspec.json.Decoder(float_hook=Decimal)  # numbers read digit for digit
    decimal_raw = exact.decode(body)
    decimal_typed = exact.decode(dump(typed))
    assert same(decimal_typed, decimal_raw)


async def test_the_emulators_own_data_has_no_drift(emu: Emulator) -> None:
    async with fast_client(emu, strict_schema=True) as client:
        for login in demo_login_ids(4, seed=70):  # the four payload variants
            await client.investments(login)
            await client.accounts_detail(login)
            await client.accounts_summary(login)
            await client.statements(login)
        assert client.schema_drift == {}


async def test_big_answers_are_not_sampled_by_default(
    emu: Emulator, login: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sampled check of a huge answer would hold the event loop: by default only
    answers up to SAMPLE_MAX_BYTES are read twice; strict_schema reads every one."""
    monkeypatch.setattr(_schema, "SAMPLE_MAX_BYTES", 100)
    emu.set_login(login, pending=0, payloads={"GetAccountsDetail": detail(added=True)})
    async with fast_client(emu) as client:
        await client.accounts_detail(login)
        assert client.schema_drift == {}
    async with fast_client(emu, strict_schema=True) as client:
        with pytest.raises(SchemaDriftError):
            await client.accounts_detail(login)


async def test_a_fan_outs_own_hook_gets_one_event_per_key_and_answer(
    client: FlinksClient, emu: Emulator, login_ids: list[str]
) -> None:
    # a key renamed in both accounts of one answer: counted twice, one event
    body = msgspec.json.encode(
        {"Accounts": [{"Id": "a", "Tittle": "x"}, {"Id": "b", "Tittle": "y"}]}
    )
    emu.set_login(login_ids[0], pending=0, payloads={"GetAccountsDetail": body})
    events: list[Event] = []
    async with client.accounts_detail_many(login_ids[:1], on_event=events.append) as results:
        assert all([r.ok async for r in results])
    assert [e.detail for e in events if e.kind == "schema_drift"] == ["Account.'Tittle'"]
    assert client.schema_drift == {"Account": {"'Tittle'": 2}}
