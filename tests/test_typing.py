"""What type checkers see: every fan-out yields typed results.

``typing.assert_type`` is checked by ``mypy --strict`` in CI (a wrong type fails the
type check) and the same code runs for real against the emulator.
"""

from __future__ import annotations

from typing import Any, assert_type

import pytest

from flinks_async import (
    AccountsDetail,
    AccountsSummary,
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
    async with client.investments_many(ids, raw=True) as raw:
        async for b in raw:
            assert_type(b, Result[bytes])
            assert isinstance(b.value, bytes)
    as_bool: bool = bool(len(ids))  # a raw flag known only at run time
    async with client.investments_many(ids, raw=as_bool) as either:
        async for e in either:
            assert_type(e, Result[Any])


async def test_single_calls_are_typed_by_raw(client: FlinksClient) -> None:
    login = demo_login_ids(1, seed=61)[0]
    assert_type(await client.investments(login), Investments)
    assert_type(await client.investments(login, raw=True), bytes)
    assert_type(await client.with_options(poll_timeout=5).accounts_summary(login), AccountsSummary)


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
