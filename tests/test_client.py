"""FlinksClient against the emulator over loopback: endpoints, headers, options, lifecycle."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import msgspec
import pytest

from flinks_async import (
    AccessDeniedError,
    AccountsDetail,
    AccountsSummary,
    Authorization,
    ClientClosedError,
    ConfigurationError,
    FlinksClient,
    FlinksError,
    InvalidLoginIdError,
    Investments,
    LoginError,
    Statements,
)
from flinks_async.testing import Emulator

from .conftest import API_KEY, CUSTOMER, SECRET, fast_client, wait_until

pytestmark = pytest.mark.anyio


async def test_authorize_returns_a_session(client: FlinksClient, emu: Emulator, login: str) -> None:
    auth = await client.authorize(login)
    assert isinstance(auth, Authorization)
    assert auth.request_id and auth.login_id == login
    assert auth.login is not None and auth.login.id == login
    assert auth.institution == "FlinksCapital"
    assert auth.login.last_refresh_at is not None
    # the token flow: one fresh token per Authorize, sent as flinks-auth-key
    token_req, auth_req = list(emu.requests)[-2:]
    assert token_req.endpoint == "GenerateAuthorizeToken"
    assert token_req.headers["flinks-auth-key"] == SECRET
    assert auth_req.headers["flinks-auth-key"] not in (SECRET, "")


async def test_investments_polls_until_200(client: FlinksClient, emu: Emulator, login: str) -> None:
    emu.set_login(login, pending=3)
    inv = await client.investments(login)
    assert isinstance(inv, Investments)
    assert inv.accounts and inv.accounts[0].positions
    # Investments is polled by re-POSTing the same request: 3 x 202, then 200
    assert emu.counts["Investments"] == 4
    posts = [r for r in emu.requests if r.endpoint == "Investments"]
    assert {r.request_id for r in posts} == {inv.request_id}
    assert all(r.headers["x-api-key"] == API_KEY for r in posts)


async def test_request_id_reuses_the_session(
    client: FlinksClient, emu: Emulator, login: str
) -> None:
    auth = await client.authorize(login)
    before = emu.counts["Authorize"]
    inv = await client.investments(login, request_id=auth.request_id)
    assert inv.request_id == auth.request_id
    assert emu.counts["Authorize"] == before


async def test_accounts_detail_polls_the_async_endpoint(
    client: FlinksClient, emu: Emulator, login: str
) -> None:
    emu.set_login(login, pending=2)
    detail = await client.accounts_detail(
        login, days_of_transactions="Days90", with_transactions=True
    )
    assert isinstance(detail, AccountsDetail)
    assert detail.accounts and detail.accounts[0].transactions
    assert emu.counts["GetAccountsDetail"] == 1
    assert emu.counts["GetAccountsDetailAsync"] == 2


async def test_summary_and_statements(
    client: FlinksClient, emu: Emulator, login_ids: list[str]
) -> None:
    summary = await client.accounts_summary(login_ids[0])
    assert isinstance(summary, AccountsSummary)
    assert summary.accounts and not summary.accounts[0].transactions
    statements = await client.statements(login_ids[1], number_of_statements="Months3")
    assert isinstance(statements, Statements)
    assert statements.statements_by_account
    assert statements.statements_by_account[0].statements
    assert statements.statements_by_account[0].statements[0].content().startswith(b"%PDF")
    assert emu.counts["GetStatementsAsync"] == 2


async def test_raw_returns_the_body_bytes(client: FlinksClient, login: str) -> None:
    body = await client.investments(login, raw=True)
    assert isinstance(body, bytes)
    decoded = msgspec.json.decode(body, type=Investments)
    assert decoded.accounts
    detail = await client.accounts_detail(login, raw=True)
    assert isinstance(detail, bytes) and b'"Accounts"' in detail


async def test_investments_url_option_reaches_the_wealth_path(emu: Emulator, login: str) -> None:
    url = f"{emu.url}/v3/{CUSTOMER}/Investments"
    async with fast_client(emu, investments_url=url) as client:
        inv = await client.investments(login)
    assert inv.accounts
    paths = {r.path for r in emu.requests if r.endpoint == "Investments"}
    assert paths == {f"/v3/{CUSTOMER}/Investments"}  # the wealth path, not BankingServices


async def test_delete_card(client: FlinksClient, emu: Emulator, login: str) -> None:
    await client.delete_card(login)
    assert login in emu.deleted
    with pytest.raises(LoginError) as info:
        await client.investments(login)
    assert info.value.flinks_code == "INVALID_LOGIN"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not-a-guid",
        "5e115eac-1209-4f19-641c-08d6d484e2f",
        "5e115eac12094f19641c08d6d484e2fe",
        "5e115eac-1209-4f19-641c-08d6d484e2fe-x",
    ],
)
async def test_malformed_login_id_raises_value_error_before_sending(
    client: FlinksClient, emu: Emulator, bad: str
) -> None:
    with pytest.raises(ValueError, match="GUID") as info:
        await client.investments(bad)
    assert isinstance(info.value, InvalidLoginIdError)
    with pytest.raises(InvalidLoginIdError):
        await client.authorize(bad)
    with pytest.raises(InvalidLoginIdError):
        await client.delete_card(bad)
    assert emu.requests_total == 0


async def test_wrong_api_key_is_access_denied_without_retry(emu: Emulator, login: str) -> None:
    async with fast_client(emu, api_key="wrong") as client:
        with pytest.raises(AccessDeniedError) as info:
            await client.investments(login)
    assert info.value.flinks_code == "UNAUTHORIZED" and info.value.http_status == 401
    assert emu.counts["Investments"] == 1


async def test_wrong_secret_key_fails_at_the_token(emu: Emulator, login: str) -> None:
    async with fast_client(emu, secret_key="nope") as client:
        with pytest.raises(AccessDeniedError):
            await client.authorize(login)
    assert emu.counts["Authorize"] == 0


async def test_environment_variables_fill_missing_options(
    emu: Emulator, login: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLINKS_CUSTOMER_ID", CUSTOMER)
    monkeypatch.setenv("FLINKS_API_KEY", API_KEY)
    monkeypatch.setenv("FLINKS_SECRET_KEY", SECRET)
    monkeypatch.setenv("FLINKS_BASE_URL", emu.url)
    async with FlinksClient(poll_interval=0.001) as client:
        assert client.settings.base_url == emu.url
        assert (await client.investments(login)).accounts


def test_customer_id_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLINKS_CUSTOMER_ID", raising=False)
    with pytest.raises(ConfigurationError, match="customer_id"):
        FlinksClient()
    with pytest.raises(ConfigurationError):
        FlinksClient(CUSTOMER, base_url="ftp://x")
    with pytest.raises(ConfigurationError):
        FlinksClient(CUSTOMER, poll_jitter=2.0)
    untyped: Any = FlinksClient  # mypy refuses the call too: the test is the run time
    with pytest.raises(TypeError):
        untyped(CUSTOMER, "https://positional.example")


async def test_repr_hides_secrets() -> None:
    client = FlinksClient(CUSTOMER, api_key=API_KEY, secret_key=SECRET)
    text = repr(client) + str(client.settings) + repr(client.settings)
    assert API_KEY not in text and SECRET not in text
    assert "api_key='***'" in repr(client)
    await client.aclose()


async def test_closed_client_refuses_calls(emu: Emulator, login: str) -> None:
    client = fast_client(emu)
    assert (await client.investments(login)).accounts  # opened lazily, no `async with`
    await client.aclose()
    await client.aclose()  # idempotent
    with pytest.raises(ClientClosedError, match="closed"):
        await client.investments(login)
    assert "closed" in repr(client) and client.closed
    with pytest.raises(ClientClosedError):
        await client.delete_card(login)


async def test_closing_during_a_retry_sleep_raises_client_closed_at_once(
    emu: Emulator, login: str
) -> None:
    emu.set_login(login, faults=["http_503@authorize"])
    client = fast_client(emu, backoff_initial=30.0, backoff_max=30.0)
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await client.authorize(login)
        except ClientClosedError as exc:
            errors.append(exc)

    with anyio.fail_after(5):  # not the 15-30 s of the backoff
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await wait_until(lambda: emu.statuses[503] == 1)  # now sleeping before the retry
            await client.aclose()
    assert len(errors) == 1
    assert isinstance(errors[0], FlinksError) and isinstance(errors[0], RuntimeError)
    assert emu.counts["Authorize"] == 1


def test_a_client_used_from_another_event_loop_says_so(login: str) -> None:
    """A client opened in one loop (say at import time, or by a test fixture) and called
    from another gets a clear error instead of aiohttp's "Event loop is closed"."""
    client = FlinksClient(CUSTOMER, base_url="http://127.0.0.1:9")
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(client.__aenter__())
        with pytest.raises(ClientClosedError, match="another event loop"):
            asyncio.run(client.investments(login))
    finally:
        first.run_until_complete(client.aclose())
        first.close()


async def test_login_ids_are_stripped_like_the_cli_does(
    client: FlinksClient, emu: Emulator, login: str
) -> None:
    inv = await client.investments(f"  {login}\n")
    assert inv.accounts
    assert {r.login_id for r in emu.requests if r.login_id} == {login}  # sent without spaces


async def test_what_flinks_would_reject_is_refused_before_sending(
    client: FlinksClient, emu: Emulator, login: str
) -> None:
    with pytest.raises(ConfigurationError, match="Days90, Days365"):
        await client.accounts_detail(login, days_of_transactions="Days30")  # type: ignore[call-overload]
    assert emu.requests_total == 0
    with pytest.raises(ConfigurationError, match="poll_interval must be > 0"):
        FlinksClient(CUSTOMER, poll_interval=0)
