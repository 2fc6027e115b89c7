"""What type checkers see of the blocking client: the async client's types, blocking.

As in ``test_typing.py``, ``typing.assert_type`` is checked by ``mypy --strict`` in CI and
the same code runs for real against the emulator.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any, assert_type

import pytest

from flinks_async import (
    AccountsDetail,
    AccountsSummary,
    AttributeCategory,
    Attributes,
    Authorization,
    BlockingResults,
    CardDeleted,
    CategoryGroup,
    ConfigurationError,
    FinancialInstitution,
    InstitutionsPage,
    Investments,
    NightlyRefreshStatus,
    Result,
    Statements,
    StoredQuestions,
    SyncFlinksClient,
)
from flinks_async.testing import demo_login_ids


def test_every_call_is_typed_on_the_client_and_its_raw_view(
    sync_client: SyncFlinksClient,
) -> None:
    login = demo_login_ids(1, seed=3401)[0]
    raw = sync_client.raw
    assert isinstance(assert_type(sync_client.investments(login), Investments), Investments)
    detail = sync_client.accounts_detail(login, days_of_transactions="Days90", poll_timeout=9)
    assert isinstance(assert_type(detail, AccountsDetail), AccountsDetail)
    summary = sync_client.accounts_summary(login, with_balance=True)
    assert isinstance(assert_type(summary, AccountsSummary), AccountsSummary)
    statements = sync_client.statements(login, number_of_statements="MostRecent")
    assert isinstance(assert_type(statements, Statements), Statements)
    assert isinstance(assert_type(raw.investments(login), bytes), bytes)
    assert isinstance(assert_type(raw.accounts_detail(login, with_kyc=True), bytes), bytes)
    assert isinstance(assert_type(raw.accounts_summary(login), bytes), bytes)
    assert isinstance(assert_type(raw.statements(login, request_id=None), bytes), bytes)
    auth = assert_type(sync_client.authorize(login), Authorization)
    assert_type(sync_client.fetch("investments", login, request_id=auth.request_id), Any)
    view = assert_type(sync_client.with_options(poll_timeout=5), SyncFlinksClient)
    assert isinstance(assert_type(view.accounts_summary(login), AccountsSummary), AccountsSummary)
    assert isinstance(assert_type(sync_client.income_attributes(login), Attributes), Attributes)
    assert_type(sync_client.raw.categorization(login), bytes)
    assert_type(sync_client.custom_attributes(login, ["count_nsf_30_days"]), Attributes)
    assert_type(sync_client.categories("CA"), list[CategoryGroup])
    assert_type(sync_client.attribute_library(), list[AttributeCategory])
    assert isinstance(assert_type(sync_client.delete_card(login), CardDeleted), CardDeleted)
    assert_type(sync_client.set_scheduled_refresh(login, True), str)
    assert_type(sync_client.mfa_questions(login), StoredQuestions)
    answer: Callable[[str, Mapping[str, str]], str] = sync_client.answer_mfa_questions
    assert_type(sync_client.institutions_page(0, 10), InstitutionsPage)
    assert_type(sync_client.institutions(page_size=10), Generator[FinancialInstitution])
    by_number: Callable[[str], FinancialInstitution] = sync_client.institution_by_routing_number
    status: Callable[[], NightlyRefreshStatus] = sync_client.nightly_refresh_status
    assert callable(by_number) and callable(status) and callable(answer)


def test_fan_outs_yield_typed_results(sync_client: SyncFlinksClient) -> None:
    ids = demo_login_ids(2, seed=3402)
    with sync_client.investments_many(ids) as inv:
        assert [isinstance(assert_type(r, Result[Investments]).value, Investments) for r in inv]
    with sync_client.accounts_detail_many(ids, days_of_transactions="Days90") as detail:
        assert_type(detail, BlockingResults[AccountsDetail])
        assert all(isinstance(d.value, AccountsDetail) for d in detail)
    with sync_client.accounts_summary_many(ids, concurrency=2) as summary:
        for m in summary:
            assert isinstance(assert_type(m, Result[AccountsSummary]).value, AccountsSummary)
    with sync_client.statements_many(ids) as statements:
        for t in statements:
            assert isinstance(assert_type(t, Result[Statements]).value, Statements)
    with sync_client.raw.accounts_detail_many(ids) as raw:
        assert all(isinstance(assert_type(b, Result[bytes]).value, bytes) for b in raw)
    with sync_client.many("investments", ids) as untyped:
        assert isinstance(assert_type(untyped, BlockingResults[Any]), BlockingResults)
        assert len(list(untyped)) == 2


def test_a_wrong_option_fails_the_type_check_and_the_call(sync_client: SyncFlinksClient) -> None:
    """mypy --strict reports each line below (else its ``type: ignore`` is unused)."""
    login = demo_login_ids(1, seed=3403)[0]
    with pytest.raises(ConfigurationError, match="days_of_transactions"):
        sync_client.accounts_detail(login, days_of_transactions="Days30")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="does not take 'with_kyc'"):
        sync_client.statements(login, with_kyc=True)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError):
        sync_client.with_options(poll_timout=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        sync_client.authorize(login, login)  # type: ignore[call-arg]
    assert sync_client.requests_sent == 0
