"""MFA in a web app: show the questions, send the answers, continue the call (run by the
test suite against the emulator's MFA login, which asks the sandbox's questions)."""

import dataclasses
from collections.abc import Mapping

import anyio

from flinks_async import FlinksClient, MFAError, MFARequiredError
from flinks_async.testing import Emulator, demo_login_ids

# What the person would type into the app's form, keyed by the prompt shown to them.
KNOWN = {
    "What city were you born in?": "Montreal",
    "What is the best country on earth?": "Canada",
    "What shape do people like most?": "Triangle",
}


@dataclasses.dataclass
class Page:
    """What the app's handler returns (as JSON, in a real app)."""

    accounts: int | None = None
    questions: list[str] | None = None  # show these; post the answers back
    request_id: str | None = None  # keep it with the form: the answers go with it
    error: str | None = None


async def get_accounts(client: FlinksClient, login_id: str) -> Page:
    """GET /accounts/{login_id}: the data, or the questions to show (HTTP 409, say)."""
    try:
        detail = await client.accounts_detail(login_id)
    except MFARequiredError as exc:
        return Page(questions=[str(c.prompt) for c in exc.challenges], request_id=exc.request_id)
    return Page(accounts=len(detail.accounts or ()))


async def post_answers(
    client: FlinksClient, login_id: str, request_id: str, answers: Mapping[str, str]
) -> Page:
    """POST /accounts/{login_id}/mfa: the answers, then the data, a follow-up question, or
    "wrong answer" (the person may try again with the same request_id)."""
    try:
        auth = await client.answer_mfa(login_id, request_id, answers)
    except MFARequiredError as exc:  # a follow-up question: same request_id
        return Page(questions=[str(c.prompt) for c in exc.challenges], request_id=request_id)
    except MFAError as exc:  # INVALID_SECURITY_RESPONSE and kin
        return Page(error=exc.flinks_code, request_id=request_id)
    detail = await client.accounts_detail(login_id, request_id=auth.request_id)
    return Page(accounts=len(detail.accounts or ()))


async def main() -> None:
    (login_id,) = demo_login_ids(1)
    async with Emulator() as emu:
        emu.set_login(login_id, mfa=True, pending=1)
        async with FlinksClient(
            "43387ca6-0391-4c82-857d-70d95f087ecb", base_url=emu.url, poll_interval=0.01
        ) as client:
            page = await get_accounts(client, login_id)
            assert page.questions is not None and page.request_id is not None
            rid = page.request_id
            print(page.questions)
            wrong = await post_answers(
                client, login_id, rid, dict.fromkeys(page.questions, "Paris")
            )
            print(wrong.error)
            while page.questions:
                page = await post_answers(
                    client, login_id, rid, {q: KNOWN[q] for q in page.questions}
                )
                print(page.questions or f"{page.accounts} accounts")


if __name__ == "__main__":
    anyio.run(main)
