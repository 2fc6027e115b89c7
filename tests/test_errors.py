"""The error tree and the FlinksCode mapping."""

from __future__ import annotations

import pickle

import pytest

from flinks_async import (
    APIError,
    FlinksError,
    InvalidLoginIdError,
    PollTimeoutError,
    RateLimitError,
    ResponseTooLargeError,
    SessionExpiredError,
    TransientAPIError,
    TransportError,
)
from flinks_async._errors import FATAL_CODES, RETRYABLE_CODES, SESSION_CODES, api_error_for


def test_tree() -> None:
    assert issubclass(InvalidLoginIdError, ValueError)
    assert issubclass(PollTimeoutError, TimeoutError)
    assert issubclass(ResponseTooLargeError, TransportError)
    assert issubclass(RateLimitError, TransientAPIError)
    for cls in (TransportError, PollTimeoutError, APIError, InvalidLoginIdError):
        assert issubclass(cls, FlinksError)


def test_code_sets_are_disjoint_and_complete() -> None:
    assert not RETRYABLE_CODES & FATAL_CODES and not SESSION_CODES & FATAL_CODES
    assert {"INVALID_LOGIN", "DISABLED_LOGIN", "ACCESS_DENIED", "UNAUTHORIZED"} <= FATAL_CODES
    for code in RETRYABLE_CODES:
        assert issubclass(api_error_for(code, 400), TransientAPIError)
    for code in SESSION_CODES:
        assert api_error_for(code, 400) is SessionExpiredError


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
