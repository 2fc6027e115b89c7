"""Answering MFA questions (FlinksClient.answer_mfa) against the emulator's MFA logins:
a 203 with the questions, a follow-up round, a wrong answer, then the data."""

from __future__ import annotations

import contextlib
import logging
import pathlib
import re
import runpy
import signal
import sys
from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest

from flinks_async import FlinksClient, MFAError, MFARequiredError
from flinks_async.testing import SANDBOX_MFA, Emulator, demo_login_ids

from .conftest import CUSTOMER, fast_client

pytestmark = pytest.mark.anyio

ANSWERS = {prompt: answer for one in SANDBOX_MFA for prompt, answer in one}


async def test_questions_then_a_follow_up_then_the_data(
    emu: Emulator, login: str, caplog: pytest.LogCaptureFixture
) -> None:
    emu.set_login(login, mfa=True, pending=1)
    with caplog.at_level(logging.DEBUG, logger="flinks_async"):
        async with fast_client(emu, log_bodies=True) as client:
            with pytest.raises(MFARequiredError) as asked:
                await client.investments(login)
            first = asked.value
            assert [c.prompt for c in first.challenges] == [p for p, _ in SANDBOX_MFA[0]]
            assert first.http_status == 203 and first.request_id and first.login_id == login
            with pytest.raises(MFARequiredError) as again:  # the follow-up question
                await client.answer_mfa(
                    login, first.request_id, {p: ANSWERS[p] for p, _ in SANDBOX_MFA[0]}
                )
            assert again.value.request_id == first.request_id
            assert [c.prompt for c in again.value.challenges] == [SANDBOX_MFA[1][0][0]]
            auth = await client.answer_mfa(
                login, first.request_id, {SANDBOX_MFA[1][0][0]: ["triangle"]}
            )
            assert auth.request_id == first.request_id
            data = await client.investments(login, request_id=auth.request_id)
            assert data.accounts
            assert (await client.investments(login)).accounts  # answered: no more questions
    assert emu.authorizations[login.lower()] == 4  # asked, answered twice, a new session
    for secret in ("Montreal", "Canada", "riangle"):  # answers are never logged
        assert secret not in caplog.text


@pytest.mark.parametrize(
    ("answers", "code"),
    [
        ({"What city were you born in?": "Paris", "What is the best country on earth?": "Canada"},
         "INVALID_SECURITY_RESPONSE"),
        ({"What city were you born in?": "Montreal"}, "SECURITYRESPONSES_INCOMPLETE"),
        ({**{p: a for p, a in SANDBOX_MFA[0]}, "Your pet's name?": "Rex"},
         "UNKNOWN_CHALLENGE_KEY"),
    ],
)  # fmt: skip
async def test_a_wrong_answer_is_a_typed_error_and_can_be_answered_again(
    emu: Emulator, login: str, answers: dict[str, str], code: str
) -> None:
    emu.set_login(login, mfa=True, pending=0)
    async with fast_client(emu) as client:
        with pytest.raises(MFARequiredError) as asked:
            await client.accounts_detail(login)
        rid = asked.value.request_id
        assert rid is not None
        with pytest.raises(MFAError) as wrong:
            await client.answer_mfa(login, rid, answers)
        assert type(wrong.value) is MFAError and wrong.value.flinks_code == code
        before = emu.authorizations[login.lower()]
        with pytest.raises(MFARequiredError):  # right this time: on to the follow-up
            await client.answer_mfa(login, rid, dict(SANDBOX_MFA[0]))
        assert emu.authorizations[login.lower()] == before + 1  # each answer sent once


async def test_answers_need_the_request_id(client: FlinksClient, login: str) -> None:
    with pytest.raises(ValueError, match="RequestId"):
        await client.answer_mfa(login, "", {"q": "a"})


async def test_the_web_app_example_walks_the_flow(capsys: pytest.CaptureFixture[str]) -> None:
    example = pathlib.Path(__file__).parent.parent / "docs" / "examples" / "mfa.py"
    await runpy.run_path(str(example))["main"]()
    assert capsys.readouterr().out.splitlines() == [
        "['What city were you born in?', 'What is the best country on earth?']",
        "INVALID_SECURITY_RESPONSE",
        "['What shape do people like most?']",
        "3 accounts",
    ]


@contextlib.asynccontextmanager
async def serve_emulator(*options: str) -> AsyncIterator[str]:
    """``flinks-async serve-emulator`` in its own process, on a free port: its URL."""
    proc = await anyio.open_process(
        [sys.executable, "-m", "flinks_async", "serve-emulator", "--port", "0", *options]
    )
    try:
        assert proc.stderr is not None
        line = b""
        with anyio.fail_after(30):
            while b"serving on" not in line or not line.endswith(b"\n"):
                line += await proc.stderr.receive()
        found = re.search(rb"serving on (http://127\.0\.0\.1:\d+)", line)
        assert found is not None, line
        yield found[1].decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            await proc.wait()


async def test_serve_emulator_makes_mfa_logins() -> None:
    """`serve-emulator --mfa LOGIN_ID`: an app's integration tests against a running
    emulator reach the MFA path (only the in-process Emulator could), and the error says
    what it is (it read "no FlinksCode (HTTP 203)")."""
    mfa, plain = demo_login_ids(2, seed=70)
    async with (
        serve_emulator("--pending", "0", "--mfa", mfa) as url,
        FlinksClient(CUSTOMER, base_url=url, poll_interval=0.01) as client,
    ):
        assert (await client.investments(plain)).accounts  # no questions for the others
        with pytest.raises(MFARequiredError) as asked:
            await client.investments(mfa)
        err = asked.value
        assert str(err).startswith(
            "MFA required (HTTP 203): the institution asks 2 MFA question(s); show the "
            "questions (.challenges) to the person and send the answers with answer_mfa()"
        ), str(err)
        assert [c.prompt for c in err.challenges] == [p for p, _ in SANDBOX_MFA[0]]
        assert err.request_id is not None
        with pytest.raises(MFARequiredError) as again:  # the follow-up question
            await client.answer_mfa(mfa, err.request_id, dict(SANDBOX_MFA[0]))
        assert "1 MFA question(s)" in str(again.value)
        auth = await client.answer_mfa(mfa, err.request_id, dict(SANDBOX_MFA[1]))
        assert (await client.investments(mfa, request_id=auth.request_id)).accounts


async def test_serve_emulator_mfa_rate_draws_mfa_logins(tmp_path: pathlib.Path) -> None:
    """`--mfa-rate P`: each login asks the questions with probability P, drawn from --seed
    as the in-process Emulator(mfa_rate=P, seed=...) draws them; a pull writes their lines
    as MFA failures, saying so."""
    ids = demo_login_ids(30, seed=71)
    drawn = Emulator(mfa_rate=0.3, seed=5)
    expected = {login for login in ids if drawn.scenario(login).mfa}
    assert 0 < len(expected) < len(ids)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    async with serve_emulator("--pending", "1", "--mfa-rate", "0.3", "--seed", "5") as url:
        proc = await anyio.run_process(
            [
                *[sys.executable, "-m", "flinks_async", "pull"],
                *["--login-ids", "ids.txt", "--out", "out.jsonl", "--poll-interval", "0.01"],
                *["--base-url", url, "--customer-id", CUSTOMER],
            ],
            cwd=tmp_path,
            check=False,
        )
    assert proc.returncode == 1, proc.stderr.decode()
    lines = [msgspec.json.decode(x) for x in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    failed = {x["login_id"]: x["error"] for x in lines if not x["ok"]}
    assert set(failed) == expected
    for error in failed.values():
        assert error["type"] == "MFARequiredError" and error["http_status"] == 203
        assert error["message"].startswith("MFA required (HTTP 203): the institution asks")
