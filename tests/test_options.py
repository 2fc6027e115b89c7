"""Per-call options: ``client.with_options(...)`` views and ``poll_timeout=`` per call."""

from __future__ import annotations

import anyio
import pytest

from flinks_async import (
    ConfigurationError,
    FlinksClient,
    PollTimeoutError,
    TransientAPIError,
)
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import fast_client, wait_until

pytestmark = pytest.mark.anyio


async def test_a_short_handler_and_a_long_job_share_one_client(emu: Emulator, login: str) -> None:
    """A web handler wanting 25 s and a nightly job wanting 30 min on one client: the
    handler gets its PollTimeoutError (with its request_id) while the job polls on."""
    emu.set_login(login, faults=["never_ready"])
    async with fast_client(emu, poll_timeout=20) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.investments, login)  # the nightly job
            await wait_until(lambda: emu.counts["Investments"] >= 2)
            web = client.with_options(poll_timeout=0.2)
            with anyio.fail_after(5), pytest.raises(PollTimeoutError) as view_timeout:
                await web.investments(login)
            with anyio.fail_after(5), pytest.raises(PollTimeoutError) as call_timeout:
                await client.accounts_detail(login, poll_timeout=0.2)
            assert client.active_polls == 1  # the job was neither joined nor cut short
            tg.cancel_scope.cancel()
    for info in (view_timeout, call_timeout):
        assert info.value.request_id and info.value.login_id == login
    assert emu.counts["Authorize"] == 3  # job, view, per-call: no sharing across options


async def test_views_share_the_pool_rate_limiter_and_single_flight(
    emu: Emulator, login_ids: list[str]
) -> None:
    async with fast_client(emu, rate_limit=5, rate_limit_window=0.05) as client:
        view = client.with_options(poll_timeout=15)
        other = client.with_options(poll_timeout=15)
        async with anyio.create_task_group() as tg:
            for login in login_ids[:10]:
                tg.start_soon(client.investments, login)
                tg.start_soon(view.investments, login)
            tg.start_soon(other.investments, login_ids[0])  # same options as view: shares
        assert client.requests_sent == view.requests_sent == emu.requests_total
    assert emu.max_requests_in_window(0.05) <= 5  # one limiter for the client and its views
    assert emu.counts["Authorize"] == 20  # client + view per login; `other` joined `view`


async def test_a_view_changes_retries_and_the_client_keeps_its_own(
    emu: Emulator, login_ids: list[str]
) -> None:
    strict, patient = login_ids[:2]
    for login in (strict, patient):
        emu.set_login(login, pending=0, faults=["http_503@data", "http_503@data"])
    async with fast_client(emu) as client:  # max_retries=3
        with pytest.raises(TransientAPIError):
            await client.with_options(max_retries=1).investments(strict)
        assert (await client.investments(patient)).accounts
    assert client.settings.max_retries == 3


async def test_with_options_refuses_what_it_cannot_change(emu: Emulator) -> None:
    client = fast_client(emu)
    with pytest.raises(ConfigurationError, match="'rate_limit'"):
        client.with_options(rate_limit=3)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="poll_timeout must be > 0"):
        client.with_options(poll_timeout=0)
    with pytest.raises(ConfigurationError, match="poll_timeout must be > 0"):
        await client.investments(demo_login_ids(1)[0], poll_timeout=-1)
    with pytest.raises(ConfigurationError, match="poll_interval must be > 0"):
        client.with_options(poll_interval=0)
    assert emu.requests_total == 0


async def test_closing_a_view_closes_the_client(emu: Emulator, login: str) -> None:
    client = fast_client(emu)
    await client.with_options(max_retries=0).aclose()
    assert client.closed
    assert isinstance(client, FlinksClient)
