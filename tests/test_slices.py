"""Big answers decoded in slices (flinks_async._slices): other tasks run between the
slices of one decode, and the value (or the error) is the one a decode in one go gives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flinks_async import (
    AccountsDetail,
    AccountsSummary,
    DecodeError,
    FlinksError,
    Investments,
    Statements,
    _slices,
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

from .conftest import API_KEY, CUSTOMER, SECRET, fast_client

pytestmark = pytest.mark.anyio


def drive(coro: Coroutine[Any, Any, Any]) -> tuple[Any, int]:
    """Run ``coro`` without an event loop (it only ever yields to let others run); return
    its value and how many times it let others run."""
    turns = 0
    while True:
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value, turns
        turns += 1


def outcome(call: Any) -> Any:
    """``call()``'s value, or its error as (type, message)."""
    try:
        return call()
    except FlinksError as exc:
        return type(exc), str(exc)


def sliced_outcome(model: type[Any], body: bytes, *, raw: bool = False) -> Any:
    decode = ModelDecoder.of(model, raw=raw)
    try:
        return drive(decode.in_slices(body))[0]
    except FlinksError as exc:
        return type(exc), str(exc)


@pytest.fixture
def tiny_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut every body, in pieces of a few elements, with a turn after each."""
    monkeypatch.setattr(_slices, "PIECE_BYTES", 300)
    monkeypatch.setattr(_slices, "RAW_PIECE_BYTES", 300)
    monkeypatch.setattr(_slices, "TURN_EVERY", 0.0)
    monkeypatch.setattr(_slices, "RESOLVE_BATCH", 3)


PAYLOADS = [
    (Investments, investments_payload(3_000_000, variant=1)),
    (AccountsDetail, accounts_payload(3_000_000, variant=2)),
    (AccountsSummary, accounts_payload(200_000, variant=1, transactions=False)),
    (Statements, statements_payload(3_000_000)),
]


@pytest.mark.parametrize(("model", "body"), PAYLOADS, ids=lambda x: getattr(x, "__name__", ""))
@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_sliced_equals_one_go_and_lets_others_run(
    model: type[Any], body: bytes, raw: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_slices, "TURN_EVERY", 0.0)  # a turn after every piece
    decode = ModelDecoder.of(model, raw=raw)
    one_go = decode(body)
    done, turns = drive(decode.sliced(body))
    assert done is not None, "the slices took this answer"
    assert done[0] == one_go
    if not raw:
        assert msgspec.json.encode(done[0]) == msgspec.json.encode(one_go)  # .security too
    if model is not AccountsSummary:
        assert turns >= 2


def test_securities_are_resolved_as_in_one_go(tiny_pieces: None) -> None:
    body = investments_payload(200_000, variant=3)
    value = drive(ModelDecoder.of(Investments, raw=False).in_slices(body))[0]
    positions = [p for a in value.accounts for p in a.positions or ()]
    assert positions and all(p.security is not None for p in positions)
    assert all(p.security.id == p.security_id for p in positions)


SMALL: dict[type[Any], bytes] = {
    Investments: investments_payload(60_000, variant=1),
    AccountsDetail: accounts_payload(60_000, variant=2),
    AccountsSummary: accounts_payload(20_000, variant=1, transactions=False),
    Statements: statements_payload(60_000),
}


def _awkward(body: bytes) -> bytes:
    """The payload pretty-printed, keys reversed, with text that looks like cuts inside
    strings, nested objects and lists inside elements, escapes and non-ASCII."""

    def mangle(obj: Any, depth: int = 0) -> Any:
        if isinstance(obj, dict):
            out = {k: mangle(v, depth + 1) for k, v in reversed(obj.items())}
            if "Description" in out or "Name" in out:
                out["Description"] = 'a "},{" b }] c \\ d é ☃ },{"Id":"x"}]'
                out["Unknown"] = {"Deep": [{"A": 1}, {"B": [{"C": "}]"}]}], "E": {}}
            return out
        if isinstance(obj, list):
            return [mangle(v, depth + 1) for v in obj]
        return obj

    return json.dumps(mangle(json.loads(body)), indent=2, ensure_ascii=False).encode()


@pytest.mark.parametrize(("model", "body"), PAYLOADS, ids=lambda x: getattr(x, "__name__", ""))
@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_awkward_but_valid_json_is_cut_right(
    tiny_pieces: None, model: type[Any], body: bytes, raw: bool
) -> None:
    body = _awkward(SMALL[model])
    decode = ModelDecoder.of(model, raw=raw)
    done, turns = drive(decode.sliced(body))
    assert done is not None and done[0] == decode(body)
    assert turns >= 3


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """Investments-shaped JSON with hostile text, random key order and whitespace."""
    text = st.text(alphabet=st.sampled_from(list('ab}{][,:" \\é\n')), max_size=12)
    money = st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False, places=2))

    def obj(fields: dict[str, Any]) -> dict[str, Any]:
        items = list(fields.items())
        return dict(draw(st.permutations(items)))

    def tx() -> dict[str, Any]:
        return obj(
            {
                "Id": draw(text),
                "Description": draw(text),
                "Amount": draw(money),
                "SecurityId": draw(st.sampled_from(["S1", "S2", "nope", None])),
                "Odd": draw(st.sampled_from([None, {}, [], {"x": [{"y": "}]"}]}, [{"z": 1}]])),
            }
        )

    accounts = [
        obj(
            {
                "Id": draw(text),
                "Cash": draw(money),
                "Transactions": [tx() for _ in range(draw(st.integers(0, 6)))],
                "Positions": [tx() for _ in range(draw(st.integers(0, 4)))],
            }
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    securities = [{"Id": "S1", "Name": draw(text)}, {"Id": "S2", "Price": draw(money)}]
    doc = obj({"Accounts": accounts, "Securities": securities, "Login": {"Id": draw(text)}})
    indent = draw(st.sampled_from([None, 1, 3]))
    encoded = json.dumps(doc, indent=indent, default=str, ensure_ascii=draw(st.booleans()))
    return encoded.encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=documents(), piece=st.integers(1, 400), raw=st.booleans())
def test_any_document_decodes_in_slices_as_in_one_go(body: bytes, piece: int, raw: bool) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_slices, "PIECE_BYTES", piece)
        mp.setattr(_slices, "RAW_PIECE_BYTES", piece)
        mp.setattr(_slices, "TURN_EVERY", 0.0)
        decode = ModelDecoder.of(Investments, raw=raw)
        assert sliced_outcome(Investments, body, raw=raw) == outcome(lambda: decode(body))


BAD = {
    "NaN money in a transaction": (b'"Amount": 1.5', b'"Amount": "NaN"'),
    "money that is not a number": (b'"Amount": 1.5', b'"Amount": "N/A"'),
    "a value that does not fit": (b'"Id": "7"', b'"Id": {"x": 1}'),
    "truncated": None,
    "no data key": (b'"Accounts"', b'"Accountz"'),
    "an escape in a key": (b'"Login"', b'"Lo\\u0067in"'),
    "a key given twice": (b'"Securities": [', b'"Accounts": [], "Securities": ['),
    "trailing text": None,
}


def _bad_body(how: str) -> bytes:
    doc = {
        "Login": {"Id": "l"},
        "Accounts": [
            {"Id": "a", "Transactions": [{"Id": str(i), "Amount": 1.5} for i in range(50)]}
        ],
        "Securities": [{"Id": "S1"}],
    }
    body = json.dumps(doc).encode()
    if how == "truncated":
        return body[: len(body) // 2]
    if how == "trailing text":
        return body + b" {}"
    old, new = BAD[how]  # type: ignore[misc]
    assert old in body
    return body.replace(old, new, 1 if how != "NaN money in a transaction" else -1)


@pytest.mark.parametrize("how", list(BAD))
@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_an_answer_the_slices_do_not_take_gets_the_one_go_value_or_error(
    tiny_pieces: None, how: str, raw: bool
) -> None:
    body = _bad_body(how)
    decode = ModelDecoder.of(Investments, raw=raw)
    assert sliced_outcome(Investments, body, raw=raw) == outcome(lambda: decode(body))


def test_money_that_is_not_a_number_is_refused_in_slices_too(tiny_pieces: None) -> None:
    body = _bad_body("NaN money in a transaction")
    with pytest.raises(DecodeError, match=r"InvestmentTransaction\.Amount is NaN"):
        drive(ModelDecoder.of(Investments, raw=False).in_slices(body))


def test_an_unfit_value_is_repaired_as_in_one_go(tiny_pieces: None) -> None:
    """Through the schema check (the client's default path): the answer that does not fit
    is decoded in one go and repaired there, with the drift reported."""
    body = _bad_body("a value that does not fit")
    results = []
    for sliced in (False, True):
        check = SchemaCheck(strict=False, keep_extra=False, hooks=())
        check._checked_count[Investments] = 10**6  # past the sample, as big answers are
        decode = check.wrap(
            ModelDecoder.of(Investments, raw=False), Investments, "Investments", None
        )
        value = drive(decode.in_slices(body))[0] if sliced else decode(body)
        results.append((value, check.summary()))
    assert results[0] == results[1]
    assert results[1][1] == {"InvestmentTransaction": {"'Id' (dict)": 1}}
    assert results[1][0].accounts[0].transactions[7].extra == {"Id": {"x": 1}}


def test_a_dangling_security_is_reported_from_the_slices(tiny_pieces: None) -> None:
    body = _bad_body("no data key").replace(b'"Accountz"', b'"Accounts"')
    body = body.replace(b'"Amount": 1.5}', b'"Amount": 1.5, "SecurityId": "gone"}', 1)
    check = SchemaCheck(strict=False, keep_extra=False, hooks=())
    check._checked_count[Investments] = 10**6
    decode = check.wrap(ModelDecoder.of(Investments, raw=False), Investments, "Investments", None)
    value = drive(decode.in_slices(body))[0]
    assert value.accounts[0].transactions[0].security is None
    assert check.summary() == {"Investments": {"'SecurityId' (not in Securities)": 1}}


def big_answers() -> Emulator:
    """An emulator whose logins answer at once, 4 MB each."""
    return Emulator(
        api_key=API_KEY, secret_key=SECRET, customer_id=CUSTOMER, pending=0, payload_bytes=4_000_000
    )


async def _ticks_while_decoding(big: int, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """A 4 MB answer fetched over HTTP while a ticker task runs: (ticks between the answer's
    arrival and the call's return, ticks in all)."""
    monkeypatch.setattr(_slices, "SLICE_FROM", big)
    monkeypatch.setattr(_slices, "TURN_EVERY", 0.0)
    ticks = 0
    at_answer: list[int] = []

    def hook(event: Any) -> None:
        if event.kind == "response" and event.endpoint == "Investments" and event.status == 200:
            at_answer.append(ticks)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    async with big_answers() as emu:
        async with fast_client(emu, event_hooks=[hook]) as client:
            task = asyncio.create_task(ticker())
            value = await client.investments(demo_login_ids(1, seed=3)[0])
            after = ticks
            task.cancel()
    assert value.accounts
    (arrived,) = at_answer
    return after - arrived, after


async def test_a_ticker_runs_between_the_slices_of_one_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    during, _ = await _ticks_while_decoding(_slices.SLICE_FROM, monkeypatch)
    assert during >= 10  # 4 MB in pieces of 128 KiB: about 30 turns


async def test_decoded_in_one_go_the_ticker_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the test above catches: the same call decoded in one go gives no turn."""
    during, _ = await _ticks_while_decoding(1 << 40, monkeypatch)
    assert during <= 2


async def test_a_call_cancelled_between_slices_gives_its_budget_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_slices, "TURN_EVERY", 0.0)
    started = asyncio.Event()
    real = _slices._Walk.turn

    async def turn(self: Any) -> None:
        started.set()
        await real(self)

    monkeypatch.setattr(_slices._Walk, "turn", turn)
    async with big_answers() as emu:
        async with fast_client(emu) as client:
            task = asyncio.create_task(client.investments(demo_login_ids(1, seed=4)[0]))
            await started.wait()
            assert client._transport.budget.used >= 4_000_000
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert client._transport.budget.used == 0
            value = await client.investments(demo_login_ids(1, seed=4)[0])  # still works
            assert value.accounts
