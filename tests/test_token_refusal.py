"""A refused secret key stops every way of pulling at the first token (issue #32 §3).

``/GenerateAuthorizeToken`` carries no login: any 401/403 from it (not a retryable code)
means the secret key or the customer id is wrong, whatever the FlinksCode (Flinks
documents ``ACCESS_DENIED`` for refused credentials; the breaker used to count only
``UNAUTHORIZED``). And ``/Authorize`` refusing (``ACCESS_DENIED``) a token minted for
that very attempt says the same of the set-up, once three different logins met it.

Counted at the emulator: the token requests it received, what reached ``/Authorize``.
"""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import anyio
import pytest

from flinks_async import AccessDeniedError, FlinksClient, Result, SetupError
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import API_KEY, CUSTOMER, SECRET, fast_client, needs_redis
from .test_cli import CLI, _env
from .test_distributed import _enqueue_cmd
from .test_distributed import _env as _worker_env

pytestmark = pytest.mark.anyio

#: (FlinksCode, HTTP status) a refused secret key is answered with
REFUSALS = [("ACCESS_DENIED", 401), ("FORBIDDEN_BY_POLICY", 403)]


def _refusing(code: str, status: int, **options: Any) -> Emulator:
    """An emulator refusing any secret key but ``SECRET`` with ``code`` / ``status``."""
    return Emulator(
        api_key=API_KEY,
        secret_key=SECRET,
        customer_id=CUSTOMER,
        wrong_secret_code=code,
        wrong_secret_status=status,
        **options,
    )


async def _pull_into(
    seen: list[Result[Any]], client: FlinksClient, ids: list[str], concurrency: int
) -> None:
    """``many()`` over ``ids``, each result into ``seen``."""
    async with client.many("accounts-detail", ids, concurrency=concurrency) as results:
        async for r in results:
            seen.append(r)


def _tokens(emu: Emulator) -> int:
    """Token requests the emulator received (its recorded requests)."""
    return sum(1 for r in emu.requests if r.endpoint == "GenerateAuthorizeToken")


@pytest.mark.parametrize(("code", "status"), REFUSALS)
async def test_pull_with_a_refused_secret_key_stops_at_the_first_token(
    tmp_path: pathlib.Path, code: str, status: int
) -> None:
    """It sent 500 token requests for 500 logins, wrote 500 ACCESS_DENIED lines, exit 1."""
    ids = demo_login_ids(500, seed=321)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    async with _refusing(code, status) as emu:
        env = {**_env(emu, tmp_path), "FLINKS_SECRET_KEY": "wrong-secret-0000"}
        with anyio.fail_after(120):  # far beyond what one refused token needs
            proc = await anyio.run_process(
                [*CLI, "pull", "--login-ids", "ids.txt", "--out", "out.jsonl", "--concurrency=50"],
                env=env,
                cwd=tmp_path,
                check=False,
            )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    errors = [line for line in err.splitlines() if line.startswith("flinks-async: error:")]
    assert errors == [
        f"flinks-async: error: set-up error: GenerateAuthorizeToken answered HTTP {status} "
        f'({code}, "Invalid secret key") and has never succeeded; check secret_key '
        "(FLINKS_SECRET_KEY) and the customer id (FLINKS_CUSTOMER_ID). Every call of this "
        "client now stops here"
    ], err
    assert "wrong-secret-0000" not in err and "Traceback" not in err
    assert _tokens(emu) == 1 and emu.requests_total == 1, emu.counts  # the first goes alone
    out = tmp_path / "out.jsonl"
    assert not out.exists() or out.read_bytes() == b""  # no line for any login
    assert "flinks-async pull: 0 ok, 0 failed;" in err


@pytest.mark.parametrize(("code", "status"), REFUSALS)
async def test_many_with_a_refused_secret_key_ends_at_the_first_token(
    code: str, status: int
) -> None:
    ids = demo_login_ids(500, seed=322)
    seen: list[Result[Any]] = []
    async with (
        _refusing(code, status) as emu,
        fast_client(emu, secret_key="wrong-secret-0000") as client,
    ):
        with pytest.raises(SetupError) as info:
            await _pull_into(seen, client, ids, 50)
        with pytest.raises(SetupError):  # the client stays stopped, sending nothing
            await client.accounts_detail(ids[-1])
    assert info.value.http_status == status and info.value.flinks_code == code
    assert isinstance(info.value, AccessDeniedError)
    assert "check secret_key" in str(info.value) and "wrong-secret" not in str(info.value)
    assert seen == []  # no result for any login: the set-up is wrong, not they
    assert _tokens(emu) == 1 and emu.requests_total == 1, emu.counts


async def test_a_secret_key_refused_after_tokens_were_minted_stops_the_client() -> None:
    """The key revoked or replaced mid-run: still the key, not the logins."""
    ids = demo_login_ids(200, seed=323)
    async with _refusing("ACCESS_DENIED", 401) as emu, fast_client(emu) as client:
        await client.accounts_detail(ids[0])
        emu.secret_key = "the-new-secret-key"  # the one configured is refused from now on
        seen: list[Result[Any]] = []
        with pytest.raises(SetupError) as info:
            await _pull_into(seen, client, ids[1:], 20)
    assert "had succeeded before (a key revoked or replaced?)" in str(info.value)
    assert seen == []
    # the first answer, plus the token requests of the logins already in flight at most
    assert _tokens(emu) <= 1 + 20, emu.counts
    assert emu.counts["Authorize"] == 1  # only the login pulled before


@needs_redis
async def test_a_worker_with_a_refused_secret_key_stops_at_the_first_token(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    redis_url, _ = redis_server
    ids = demo_login_ids(100, seed=324)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    async with _refusing("ACCESS_DENIED", 401, pending=1, payload_bytes=300) as emu:
        env = {
            **_worker_env(emu),
            "FLINKS_API_KEY": API_KEY,
            "FLINKS_SECRET_KEY": "wrong-secret-0000",
        }
        await anyio.run_process(_enqueue_cmd(redis_url, ids_file), env=env)
        with anyio.fail_after(120):  # far beyond what one refused token needs
            wrong = await anyio.run_process(
                [*CLI, "worker", "--redis", redis_url], env=env, check=False
            )
        err = wrong.stderr.decode()
        assert wrong.returncode == 2, err
        assert err.count("flinks-async: error: set-up error:") == 1, err
        assert "GenerateAuthorizeToken answered HTTP 401 (ACCESS_DENIED" in err
        assert "check secret_key" in err
        assert "wrong-secret-0000" not in err and "Traceback" not in err
        assert _tokens(emu) == 1 and emu.requests_total == 1, emu.counts
        status = await anyio.run_process(
            [*CLI, "status", "--redis", redis_url, "--job", "nightly"], env=env
        )
        assert "100 logins, 0 done, 0 failed, 100 pending" in status.stdout.decode()


# --- /Authorize refusing a token minted a moment before -------------------------------


async def test_authorize_refusing_fresh_tokens_is_the_set_up_after_three_logins() -> None:
    """ACCESS_DENIED from /Authorize to a token minted for that very attempt: the token
    is neither expired (30 minutes) nor used (single-use), so three different logins
    refused before any Authorize succeeded say the set-up is wrong: a fan-out ends."""
    ids = demo_login_ids(400, seed=325)
    seen: list[Result[Any]] = []
    rates = {"ACCESS_DENIED@authorize": 1.0}
    async with (
        _refusing("ACCESS_DENIED", 401, fault_rates=rates) as emu,
        fast_client(emu) as client,
    ):
        with pytest.raises(SetupError) as info:
            await _pull_into(seen, client, ids, 20)
    assert info.value.endpoint == "Authorize" and info.value.flinks_code == "ACCESS_DENIED"
    text = str(info.value)
    assert "for 3 different logins with authorize tokens minted for them a moment before" in text
    assert "check api_key (FLINKS_API_KEY), secret_key" in text
    assert len(seen) <= 2 and all(isinstance(r.error, AccessDeniedError) for r in seen)
    # the Authorize of the logins in flight at most, not one per login
    assert emu.counts["Authorize"] <= 20 + len(seen), emu.counts
    assert max(emu.token_ages) < 5  # minted a moment before, indeed


async def test_authorize_access_denied_stays_the_logins_own_without_a_token() -> None:
    """No secret key, so no token: ACCESS_DENIED is about each login, as before."""
    ids = demo_login_ids(6, seed=326)
    rates = {"ACCESS_DENIED@authorize": 1.0}
    async with (
        Emulator(api_key=API_KEY, customer_id=CUSTOMER, fault_rates=rates) as emu,
        fast_client(emu, secret_key=None) as client,
        client.many("accounts-detail", ids, concurrency=6) as results,
    ):
        ended = [r async for r in results]
    assert len(ended) == 6
    assert all(isinstance(r.error, AccessDeniedError) for r in ended)
    assert not any(isinstance(r.error, SetupError) for r in ended)
    assert emu.counts["Authorize"] == 6


async def test_authorize_access_denied_after_an_authorize_succeeded_is_the_logins_own() -> None:
    ok, *refused = demo_login_ids(7, seed=327)
    async with (
        _refusing("ACCESS_DENIED", 401) as emu,
        fast_client(emu) as client,
    ):
        for one in refused:
            emu.set_login(one, pending=0, faults=["ACCESS_DENIED@authorize"])
        await client.accounts_detail(ok)
        async with client.many("accounts-detail", refused, concurrency=6) as results:
            ended = [r async for r in results]
    assert len(ended) == 6
    assert all(isinstance(r.error, AccessDeniedError) for r in ended)
    assert not any(isinstance(r.error, SetupError) for r in ended)


@needs_redis
async def test_a_worker_whose_fresh_tokens_authorize_refuses_stops_and_writes_no_line(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """The first refusals are in doubt (the key, or the login?): the worker puts those
    logins back instead of writing a final line, and stops at the third login."""
    redis_url, _ = redis_server
    ids = demo_login_ids(30, seed=328)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    rates = {"ACCESS_DENIED@authorize": 1.0}
    async with _refusing("ACCESS_DENIED", 401, pending=1, fault_rates=rates) as emu:
        env = {
            **_worker_env(emu),
            "FLINKS_API_KEY": API_KEY,
            "FLINKS_SECRET_KEY": SECRET,
            "FLINKS_WORKER_CONCURRENCY": "10",
        }
        await anyio.run_process(_enqueue_cmd(redis_url, ids_file), env=env)
        with anyio.fail_after(120):
            wrong = await anyio.run_process(
                [*CLI, "worker", "--redis", redis_url], env=env, check=False
            )
        err = wrong.stderr.decode()
        assert wrong.returncode == 2, err
        assert err.count("flinks-async: error: set-up error:") == 1, err
        assert "Authorize answered HTTP 401 (ACCESS_DENIED" in err and "Traceback" not in err
        assert emu.counts["Authorize"] <= 10 * 2, emu.counts  # the logins it had started
        status = await anyio.run_process(
            [*CLI, "status", "--redis", redis_url, "--job", "nightly"], env=env
        )
        assert "30 logins, 0 done, 0 failed, 30 pending" in status.stdout.decode()


async def test_authorize_access_denied_to_an_older_token_stays_the_logins_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a token a moment old rules out the token itself: with the bound at 0 s every
    token is "older", and ACCESS_DENIED is about each login, as before."""
    monkeypatch.setattr("flinks_async._transport.FRESH_TOKEN_AGE", 0.0)
    ids = demo_login_ids(6, seed=329)
    rates = {"ACCESS_DENIED@authorize": 1.0}
    async with (
        _refusing("ACCESS_DENIED", 401, fault_rates=rates) as emu,
        fast_client(emu) as client,
        client.many("accounts-detail", ids, concurrency=6) as results,
    ):
        ended = [r async for r in results]
    assert len(ended) == 6
    assert all(isinstance(r.error, AccessDeniedError) for r in ended)
    assert not any(isinstance(r.error, SetupError) for r in ended)
