"""What type checkers see: every call and fan-out is typed, on the client and its raw view.

``typing.assert_type`` is checked by ``mypy --strict`` in CI (a wrong type fails the
type check) and the same code runs for real against the emulator.
"""

from __future__ import annotations

from typing import Any, assert_type

import pytest

from flinks_async import (
    AccountsDetail,
    AccountsSummary,
    Attributes,
    Categorization,
    ConfigurationError,
    FlinksClient,
    Investments,
    Result,
    Statements,
)
from flinks_async.testing import demo_login_ids

pytestmark = pytest.mark.anyio


async def test_fan_outs_yield_typed_results(client: FlinksClient) -> None:
    ids = demo_login_ids(2, seed=60)
    async with client.investments_many(ids) as inv:
        async for r in inv:
            assert_type(r, Result[Investments])
            assert isinstance(r.value, Investments)
    async with client.accounts_detail_many(ids, days_of_transactions="Days90") as detail:
        async for d in detail:
            assert_type(d, Result[AccountsDetail])
            assert isinstance(d.value, AccountsDetail)
    async with client.accounts_summary_many(ids) as summary:
        async for m in summary:
            assert_type(m, Result[AccountsSummary])
            assert isinstance(m.value, AccountsSummary)
    async with client.statements_many(ids) as statements:
        async for t in statements:
            assert_type(t, Result[Statements])
            assert isinstance(t.value, Statements)
    async with client.raw.investments_many(ids) as raw:
        async for b in raw:
            assert_type(b, Result[bytes])
            assert isinstance(b.value, bytes)
    with pytest.warns(DeprecationWarning, match="raw="):  # raw= still types (and works) as it did
        old_raw = client.investments_many(ids, raw=True)
    async with old_raw as old:
        async for o in old:
            assert_type(o, Result[bytes])
    as_bool: bool = bool(len(ids))  # a raw flag known only at run time
    with pytest.warns(DeprecationWarning, match="raw="):
        pull = client.investments_many(ids, raw=as_bool)
    async with pull as either:
        async for e in either:
            assert_type(e, Result[Any])


async def test_single_calls_are_typed_by_raw(client: FlinksClient) -> None:
    login = demo_login_ids(1, seed=61)[0]
    assert_type(await client.investments(login), Investments)
    assert_type(await client.with_options(poll_timeout=5).accounts_summary(login), AccountsSummary)
    with pytest.warns(DeprecationWarning, match="raw="):  # raw= still types (and works) as it did
        assert_type(await client.investments(login, raw=True), bytes)


async def test_every_call_is_typed_on_the_client_and_its_raw_view(client: FlinksClient) -> None:
    """Each data method's result type, typed and raw (``client.raw``), single and fan-out."""
    login = demo_login_ids(1, seed=63)[0]
    raw = client.raw
    assert isinstance(assert_type(await client.investments(login), Investments), Investments)
    detail = await client.accounts_detail(login, days_of_transactions="Days90")
    assert isinstance(assert_type(detail, AccountsDetail), AccountsDetail)
    summary = await client.accounts_summary(login, with_balance=True)
    assert isinstance(assert_type(summary, AccountsSummary), AccountsSummary)
    statements = await client.statements(login, number_of_statements="MostRecent")
    assert isinstance(assert_type(statements, Statements), Statements)
    assert isinstance(assert_type(await raw.investments(login), bytes), bytes)
    raw_detail = await raw.accounts_detail(login, days_of_transactions="Days365")
    assert isinstance(assert_type(raw_detail, bytes), bytes)
    assert isinstance(assert_type(await raw.accounts_summary(login), bytes), bytes)
    assert isinstance(assert_type(await raw.statements(login, request_id=None), bytes), bytes)
    async with raw.investments_many([login]) as a:
        assert [isinstance(assert_type(r, Result[bytes]).value, bytes) async for r in a] == [True]
    async with raw.accounts_detail_many([login], with_kyc=True) as b:
        assert [isinstance(assert_type(r, Result[bytes]).value, bytes) async for r in b] == [True]
    async with raw.accounts_summary_many([login], concurrency=2) as c:
        assert [isinstance(assert_type(r, Result[bytes]).value, bytes) async for r in c] == [True]
    async with raw.statements_many([login]) as d:
        assert [isinstance(assert_type(r, Result[bytes]).value, bytes) async for r in d] == [True]
    income = await client.income_attributes(login)  # Enrich's rows: typed as every row
    assert isinstance(assert_type(income, Attributes), Attributes)
    categorized = await client.categorization(login, request_id=income.request_id)
    assert isinstance(assert_type(categorized, Categorization), Categorization)
    assert isinstance(assert_type(await raw.all_attributes(login), bytes), bytes)
    async with client.credit_risk_attributes_many([login]) as e:
        assert [isinstance(assert_type(r, Result[Attributes]).value, Attributes) async for r in e]
    assert_type(await client.fetch("investments", login), Any)  # the untyped dispatchers
    as_bool: bool = bool(login)  # a raw flag known only at run time: Any
    with pytest.warns(DeprecationWarning, match="raw="):
        assert_type(await client.statements(login, raw=as_bool), Any)


async def test_a_wrong_option_fails_the_type_check_and_the_call(client: FlinksClient) -> None:
    """mypy --strict (CI) reports each line below, or its ``type: ignore`` would be unused
    (``warn_unused_ignores``); at run time each raises before any request."""
    login = demo_login_ids(1, seed=62)[0]
    sent = client.requests_sent
    with pytest.raises(ConfigurationError, match="days_of_transactions"):
        await client.accounts_detail(login, days_of_transactions="Days30")  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="does not take 'with_kyc'"):
        await client.statements(login, with_kyc=True)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError):
        client.with_options(poll_timout=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_conections"):
        FlinksClient(client.settings.customer_id, max_conections=5)  # type: ignore[call-arg]
    assert client.requests_sent == sent
