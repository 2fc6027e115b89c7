"""The error tree and the FlinksCode mapping."""

from __future__ import annotations

import pickle

import pytest

from flinks_async import (
    AccessDeniedError,
    APIError,
    FlinksError,
    InvalidLoginIdError,
    InvalidRequestError,
    LoginError,
    NotAvailableError,
    PollTimeoutError,
    RateLimitError,
    ResponseTooLargeError,
    TransientAPIError,
    TransportError,
)
from flinks_async._errors import api_error_for
from flinks_async._retry import FATAL_CODES, RETRYABLE_CODES
from flinks_async.testing import Emulator

from .conftest import fast_client


def test_tree() -> None:
    assert issubclass(InvalidLoginIdError, ValueError)
    assert issubclass(PollTimeoutError, TimeoutError)
    assert issubclass(ResponseTooLargeError, TransportError)
    assert issubclass(RateLimitError, TransientAPIError)
    for cls in (TransportError, PollTimeoutError, APIError, InvalidLoginIdError):
        assert issubclass(cls, FlinksError)


# What docs/errors.md and the Flinks notes promise for each FlinksCode, written out here
# rather than derived from the code's own sets: (code, class, retried?).
DOCUMENTED = [
    ("AGGREGATION_ERROR", TransientAPIError, True),
    ("RETRY_LATER", TransientAPIError, True),
    ("CARD_IN_USE", TransientAPIError, True),
    ("CONCURRENT_SESSION", TransientAPIError, True),
    ("TOO_MANY_REQUESTS", RateLimitError, True),
    ("INVALID_LOGIN", LoginError, False),
    ("DISABLED_LOGIN", LoginError, False),
    ("NEW_ACCOUNT", LoginError, False),
    ("UNAUTHORIZED", AccessDeniedError, False),
    ("ACCESS_DENIED", AccessDeniedError, False),
    ("INVALID_REQUEST", InvalidRequestError, False),
    ("DISABLED_INSTITUTION", NotAvailableError, False),
    ("METHOD_NOT_AVAILABLE", NotAvailableError, False),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("code", "cls", "retried"), DOCUMENTED)
async def test_each_code_is_typed_and_retried_as_documented(
    emu: Emulator, login: str, code: str, cls: type[APIError], retried: bool
) -> None:
    emu.set_login(login, pending=0, faults=[f"{code}@data"])
    async with fast_client(emu, max_retries=1) as client:
        if retried:  # one fault, one retry: the call succeeds on the second request
            assert (await client.investments(login)).accounts
        else:
            with pytest.raises(cls) as info:
                await client.investments(login)
            assert type(info.value) is cls and info.value.flinks_code == code
    assert emu.counts["Investments"] == (2 if retried else 1)
    assert api_error_for(code, 400) is cls
    assert (code in RETRYABLE_CODES) is retried and (code in FATAL_CODES) is not retried


@pytest.mark.parametrize(("status", "cls"), [(429, RateLimitError), (503, TransientAPIError)])
def test_status_fallback(status: int, cls: type[APIError]) -> None:
    assert api_error_for(None, status) is cls


def test_messages_shorten_login_ids_and_errors_pickle() -> None:
    login = "5e115eac-1209-4f19-641c-08d6d484e2fe"
    err = APIError(
        "nope",
        flinks_code="INVALID_LOGIN",
        http_status=401,
        login_id=login,
        request_id="r",
        endpoint="Authorize",
    )
    assert "5e115eac…" in str(err) and login not in str(err)
    assert str(err).startswith("INVALID_LOGIN (HTTP 401)")
    back = pickle.loads(pickle.dumps(err))
    assert (back.flinks_code, back.login_id, back.http_status) == ("INVALID_LOGIN", login, 401)
    timeout = PollTimeoutError("x", attempts=3, elapsed=1.5, login_id=login)
    assert pickle.loads(pickle.dumps(timeout)).attempts == 3


def test_the_errors_page_draws_the_module_tree() -> None:
    import pathlib
    import textwrap

    from flinks_async import _errors

    assert _errors.__doc__ is not None
    tree = textwrap.dedent(_errors.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0])
    page = (pathlib.Path(__file__).parent.parent / "docs" / "errors.md").read_text()
    assert tree.replace("``", "") in page
