"""Answering MFA questions (FlinksClient.answer_mfa) against the emulator's MFA logins:
a 203 with the questions, a follow-up round, a wrong answer, then the data."""

from __future__ import annotations

import logging
import pathlib
import runpy

import pytest

from flinks_async import FlinksClient, MFAError, MFARequiredError
from flinks_async.testing import SANDBOX_MFA, Emulator

from .conftest import fast_client

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
