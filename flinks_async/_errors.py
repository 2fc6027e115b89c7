"""The exceptions flinks-async raises.

Every error the client raises for a Flinks call is a :class:`FlinksError`::

    FlinksError                      base: .login_id .request_id .endpoint
     ├── InvalidLoginIdError         also a ValueError: the login id is not a GUID (none sent)
     ├── ConfigurationError          also a ValueError: a missing or malformed client option
     ├── ClientClosedError           also a RuntimeError: the client was closed before or
     │                               during the call (or used from another event loop)
     ├── TransportError              network failure after the retries: connect, reset, timeout
     │    ├── ResponseTooLargeError  a body over ``max_response_bytes`` (read stops there)
     │    └── ServerUnreachableError ``unreachable_after`` connection failures and no answer ever
     ├── DecodeError                 a body that is not the expected JSON (HTML, truncated, shape)
 │    └── SchemaDriftError       strict_schema=True: a key or type the models do not map (.drift)
     ├── PollTimeoutError            also a TimeoutError: still 202 after ``poll_timeout``
     └── APIError                    Flinks answered with an error (.flinks_code, .http_status)
          ├── TransientAPIError      retryable answer, retries used up (5xx, RETRY_LATER, ...)
          │    └── RateLimitError    TOO_MANY_REQUESTS / HTTP 429: .retry_after
          ├── SessionExpiredError    SESSION_NONEXISTENT / SESSION_EXPIRED after one re-authorize
          ├── LoginError             INVALID_LOGIN, DISABLED_LOGIN, NEW_ACCOUNT
          ├── AccessDeniedError      UNAUTHORIZED, ACCESS_DENIED
          ├── InvalidRequestError    INVALID_REQUEST, an unexpected redirect or status
          ├── NotAvailableError      DISABLED_INSTITUTION, METHOD_NOT_AVAILABLE
          └── MFARequiredError       HTTP 203: the institution asks for MFA (live mode only)

Exception messages never contain API keys, secret keys or authorize tokens, and
show login ids shortened (``5e115eac…``); the full id is on ``.login_id``.
"""

from __future__ import annotations

from ._redact import short_id

__all__ = [
    "FATAL_CODES",
    "RETRYABLE_CODES",
    "SESSION_CODES",
    "APIError",
    "AccessDeniedError",
    "ClientClosedError",
    "ConfigurationError",
    "DecodeError",
    "FlinksError",
    "InvalidLoginIdError",
    "InvalidRequestError",
    "LoginError",
    "MFARequiredError",
    "NotAvailableError",
    "PollTimeoutError",
    "RateLimitError",
    "ResponseTooLargeError",
    "SchemaDriftError",
    "ServerUnreachableError",
    "SessionExpiredError",
    "TransientAPIError",
    "TransportError",
    "api_error_for",
]

#: FlinksCodes that are retried with backoff (plus HTTP 429 and every 5xx).
RETRYABLE_CODES = frozenset(
    {
        "AGGREGATION_ERROR",
        "RETRY_LATER",
        "CARD_IN_USE",
        "CONCURRENT_SESSION",
        "TOO_MANY_REQUESTS",
    }
)
#: FlinksCodes after which the client authorizes once more and carries on.
SESSION_CODES = frozenset({"SESSION_NONEXISTENT", "SESSION_EXPIRED"})


class FlinksError(Exception):
    """Base class of every error raised for a Flinks call.

    Attributes:
        login_id: the login the call was for, when known (full value; messages shorten it).
        request_id: the Flinks requestId of the session, when one was issued.
        endpoint: the Flinks endpoint name, for example ``"Investments"``.
    """

    def __init__(
        self,
        message: str,
        *,
        login_id: str | None = None,
        request_id: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.message = message
        self.login_id = login_id
        self.request_id = request_id
        self.endpoint = endpoint
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.endpoint:
            where.append(self.endpoint)
        if self.login_id:
            where.append(f"login {short_id(self.login_id)}")
        return f"{self.message} [{', '.join(where)}]" if where else self.message

    def __reduce__(self) -> tuple[object, ...]:  # keep attributes through pickling
        return (_rebuild, (type(self), self.__dict__))


def _rebuild(cls: type[FlinksError], state: dict[str, object]) -> FlinksError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class InvalidLoginIdError(FlinksError, ValueError):
    """The login id is not a GUID; raised before any request is sent."""


class ConfigurationError(FlinksError, ValueError):
    """A client option is missing or malformed (for example no customer id)."""


class ClientClosedError(FlinksError, RuntimeError):
    """The :class:`~flinks_async.FlinksClient` was closed before or during this call, or is
    used from an event loop other than the one it was opened in. Open a new client (one per
    event loop), or keep the client open until its calls and fan-outs have finished."""


class TransportError(FlinksError):
    """The HTTP exchange failed (connect error, reset, read timeout, torn body) after retries.

    ``__cause__`` is the last underlying exception.
    """


class ResponseTooLargeError(TransportError):
    """A response body exceeded ``max_response_bytes``; reading stopped at the limit."""


class ServerUnreachableError(TransportError):
    """The circuit breaker (``unreachable_after``): that many connection attempts failed in a
    row (refused, unknown host, connect timeout) before the server ever answered, so the
    base URL is most likely wrong or the host down. Every call of this client now fails at
    once with this error instead of retrying; a fan-out stops with it."""


class DecodeError(FlinksError):
    """A response body was not the JSON the endpoint promises (HTML page, truncated, wrong shape).

    Attributes:
        http_status: the HTTP status of the response.
        content_type: its Content-Type header.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        content_type: str | None = None,
        login_id: str | None = None,
        request_id: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, login_id=login_id, request_id=request_id, endpoint=endpoint)
        self.http_status = http_status
        self.content_type = content_type


class SchemaDriftError(DecodeError):
    """``strict_schema=True``: the answer has a key or a value type the models do not map
    (see :mod:`flinks_async._schema`). Never retried: the same bytes would fail again.

    Attributes:
        drift: ``[(model, key), ...]`` found in this answer (``("Position", "'NewField'")``,
            ``("Balance", "'Current' (str)")``); keys only, never values.
    """

    def __init__(
        self,
        message: str,
        *,
        drift: list[tuple[str, str]] | None = None,
        login_id: str | None = None,
        request_id: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, login_id=login_id, request_id=request_id, endpoint=endpoint)
        self.drift = drift or []


class PollTimeoutError(FlinksError, TimeoutError):
    """The data was still pending (202) when ``poll_timeout`` ran out.

    Attributes:
        attempts: how many data requests were answered 202.
        elapsed: seconds from the start of the call to giving up.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: int,
        elapsed: float,
        login_id: str | None = None,
        request_id: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, login_id=login_id, request_id=request_id, endpoint=endpoint)
        self.attempts = attempts
        self.elapsed = elapsed


class APIError(FlinksError):
    """Flinks answered with an error.

    Attributes:
        flinks_code: the ``FlinksCode`` of the answer (``None`` when the body had none).
        http_status: the HTTP status.
        message: Flinks' ``Message`` (or a description of the unexpected answer).
    """

    def __init__(
        self,
        message: str,
        *,
        flinks_code: str | None = None,
        http_status: int | None = None,
        login_id: str | None = None,
        request_id: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, login_id=login_id, request_id=request_id, endpoint=endpoint)
        self.flinks_code = flinks_code
        self.http_status = http_status

    def __str__(self) -> str:
        code = self.flinks_code or "no FlinksCode"
        return f"{code} (HTTP {self.http_status}): {super().__str__()}"


class TransientAPIError(APIError):
    """A retryable answer (5xx, AGGREGATION_ERROR, RETRY_LATER, CARD_IN_USE, ...) after retries."""


class RateLimitError(TransientAPIError):
    """TOO_MANY_REQUESTS or HTTP 429 after retries. ``retry_after`` is the server's hint (s)."""

    retry_after: float | None = None


class SessionExpiredError(APIError):
    """SESSION_NONEXISTENT / SESSION_EXPIRED, still, after the one re-authorize."""


class LoginError(APIError):
    """INVALID_LOGIN, DISABLED_LOGIN or NEW_ACCOUNT: the person must reconnect the account."""


class AccessDeniedError(APIError):
    """UNAUTHORIZED or ACCESS_DENIED: check the API key, secret key and customer id."""


class InvalidRequestError(APIError):
    """INVALID_REQUEST, or an answer the protocol does not allow (redirect, odd status)."""


class NotAvailableError(APIError):
    """DISABLED_INSTITUTION or METHOD_NOT_AVAILABLE: not possible on this instance now."""


class MFARequiredError(APIError):
    """HTTP 203: the institution asks for MFA, which cached-mode calls should never see."""


_CODE_CLASSES: dict[str, type[APIError]] = {
    "AGGREGATION_ERROR": TransientAPIError,
    "RETRY_LATER": TransientAPIError,
    "CARD_IN_USE": TransientAPIError,
    "CONCURRENT_SESSION": TransientAPIError,
    "TOO_MANY_REQUESTS": RateLimitError,
    "SESSION_NONEXISTENT": SessionExpiredError,
    "SESSION_EXPIRED": SessionExpiredError,
    "INVALID_LOGIN": LoginError,
    "DISABLED_LOGIN": LoginError,
    "NEW_ACCOUNT": LoginError,
    "UNAUTHORIZED": AccessDeniedError,
    "ACCESS_DENIED": AccessDeniedError,
    "INVALID_REQUEST": InvalidRequestError,
    "DISABLED_INSTITUTION": NotAvailableError,
    "METHOD_NOT_AVAILABLE": NotAvailableError,
}
#: FlinksCodes that fail at once, without retry.
FATAL_CODES = frozenset(
    c
    for c, k in _CODE_CLASSES.items()
    if not issubclass(k, TransientAPIError | SessionExpiredError)
)


def api_error_for(flinks_code: str | None, http_status: int) -> type[APIError]:
    """The exception class for an error answer: by FlinksCode first, then by HTTP status."""
    if flinks_code and flinks_code in _CODE_CLASSES:
        return _CODE_CLASSES[flinks_code]
    if http_status == 429:
        return RateLimitError
    if http_status >= 500:
        return TransientAPIError
    if http_status == 203:
        return MFARequiredError
    if flinks_code:
        return APIError  # a code this version does not know: fail, typed, no retry
    if http_status in (401, 403):
        return AccessDeniedError
    return InvalidRequestError
