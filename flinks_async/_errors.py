"""The exceptions flinks-async raises.

Every error the client raises for a Flinks call is a :class:`FlinksError`::

    FlinksError                      base: .login_id .request_id .endpoint
     ├── InvalidLoginIdError         also a ValueError: the login id is not a GUID (none sent)
     ├── ConfigurationError          also a ValueError: a missing or malformed client option
     ├── ClientClosedError           also a RuntimeError: the client was closed before or
     │                               during the call (or used from another event loop)
     ├── CoordinationError           redis_url: Redis unreachable or failing (no fallback)
     ├── TransportError              network failure after the retries: connect, reset, timeout
     │    ├── ResponseTooLargeError  a body over ``max_response_bytes`` (read stops there)
     │    └── ServerUnreachableError ``unreachable_after`` connection failures and no answer ever
     ├── DecodeError                 a body that is not the expected JSON (HTML page, shape,
     │    │                          nested too deep), or money that is not a finite number
     │    └── SchemaDriftError       nothing the model knows in a 200, or (strict_schema=True)
     │                               a key or type the models do not map (.drift)
     ├── PollTimeoutError            also a TimeoutError: still 202 after ``poll_timeout``
     └── APIError                    Flinks answered with an error (.flinks_code, .http_status)
          ├── TransientAPIError      retryable answer, retries used up (5xx, RETRY_LATER, ...)
          │    └── RateLimitError    TOO_MANY_REQUESTS / HTTP 429: .retry_after
          ├── SessionExpiredError    SESSION_NONEXISTENT / SESSION_EXPIRED after one re-authorize
          ├── LoginError             INVALID_LOGIN, DISABLED_LOGIN, NEW_ACCOUNT,
          │                          INVALID_USERNAME, INVALID_PASSWORD
          ├── AccessDeniedError      UNAUTHORIZED, ACCESS_DENIED (Flinks' message says why)
          ├── InvalidRequestError    INVALID_REQUEST, ALREADY_AUTHORIZED, a redirect, odd status
          │    └── AttributeRequestError  Enrich's INVALID_REQUEST: .case, .refused (*)
          ├── SetupError             the set-up is wrong (key, customer id, base URL): the
          │                          breaker stops every call of the client; a fan-out ends
          ├── NotAvailableError      DISABLED_INSTITUTION, METHOD_NOT_AVAILABLE
          │    └── PackageNotSubscribedError  an Enrich package not subscribed (*)
          ├── NoTransactionsError    NO_TRANSACTION: too few transactions for the request
          └── MFAError               INVALID_SECURITY_RESPONSE, QUESTION_NOT_FOUND,
               │                     UNKNOWN_CHALLENGE_KEY, SECURITYRESPONSES_INCOMPLETE
               └── MFARequiredError  HTTP 203: the institution asks MFA questions (.challenges)

(*) defined in :mod:`flinks_async._enrich_errors`.

Exception messages never contain API keys, secret keys or authorize tokens, and
show login ids shortened (``5e115eac…``); the full id is on ``.login_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._redact import short_id

if TYPE_CHECKING:
    from ._models import SecurityChallenge

__all__ = [
    "CODE_CLASSES",
    "APIError",
    "AccessDeniedError",
    "ClientClosedError",
    "ConfigurationError",
    "CoordinationError",
    "DecodeError",
    "FlinksError",
    "InvalidLoginIdError",
    "InvalidRequestError",
    "LoginError",
    "MFAError",
    "MFARequiredError",
    "NoTransactionsError",
    "NotAvailableError",
    "PollTimeoutError",
    "RateLimitError",
    "ResponseTooLargeError",
    "SchemaDriftError",
    "ServerUnreachableError",
    "SessionExpiredError",
    "SetupError",
    "TransientAPIError",
    "TransportError",
    "api_error_for",
    "drop_tracebacks",
    "setup_error_for",
]


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


class CoordinationError(FlinksError):
    """``redis_url`` is set and Redis cannot be used (unreachable, timing out, refusing the
    password). Raised by the call that needed it, after at most ``coordination_timeout``;
    with ``redis_fallback="local"`` the client logs a warning and goes on in-process
    instead. The message names Redis by host and port, never with its password."""


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
    """A response body was not the JSON the endpoint promises (an HTML page, JSON that is not
    an object or cannot be read as the model), or a statement that is not base64.

    A complete ``200`` that is JSON but does not decode is **not** re-sent: the same bytes
    would fail again. Only a body that is not JSON at all (an HTML or empty page, as a
    proxy serves during maintenance) is retried, like a torn body (a
    :class:`TransportError`).

    Attributes:
        http_status: the HTTP status of the response.
        content_type: its Content-Type header.
        retryable: whether the client retried it (see above).
        field: the model and field holding a value that is not what it must be
            (``"Balance.Current"``: a money value that is not a finite number, see
            :mod:`flinks_async._money`), else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        content_type: str | None = None,
        retryable: bool = False,
        field: str | None = None,
        login_id: str | None = None,
        request_id: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, login_id=login_id, request_id=request_id, endpoint=endpoint)
        self.http_status = http_status
        self.content_type = content_type
        self.retryable = retryable
        self.field = field


class SchemaDriftError(DecodeError):
    """The answer does not have the shape the models know (see :mod:`flinks_async._schema`):

    * always: a ``200`` holding none of the endpoint's data keys (for ``/Investments``:
      ``Accounts``, ``Securities``, ``Value``, ``Cash``), so that "no data" and "a shape
      the client does not understand" never look the same;
    * with ``strict_schema=True``: any key or value type the models do not map.

    Never retried: the same bytes would fail again.

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
    """The data was still pending (202) when this call's own ``poll_timeout`` ran out,
    whoever polled for it (single-flight: each caller gives up at its own deadline).

    Attributes:
        attempts: how many data requests this process had answered 202 for the call while
            it waited (0 for a call that only waited on another process's polling).
        elapsed: seconds from the start of the call to giving up.
        request_id: the session polled, when known: pass it as ``request_id`` to a later
            call to come back for the same data.
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
    """INVALID_LOGIN, DISABLED_LOGIN, NEW_ACCOUNT, INVALID_USERNAME or INVALID_PASSWORD: the
    person must reconnect the account through Flinks Connect."""


class AccessDeniedError(APIError):
    """UNAUTHORIZED or ACCESS_DENIED. Flinks uses UNAUTHORIZED both for credentials it
    refuses (API key, secret key, authorize token, customer id) and for a card the
    institution did not authorize; the exception keeps Flinks' ``Message``, which says
    which. Without a FlinksCode, a 401/403 lands here too."""


class InvalidRequestError(APIError):
    """INVALID_REQUEST, ALREADY_AUTHORIZED, or an answer the protocol does not allow
    (redirect, odd status)."""


class SetupError(APIError):
    """The answers say the client's set-up is wrong, not any one login: an endpoint that has
    never answered this client with a 2xx answered 401/403 (``UNAUTHORIZED`` or no
    FlinksCode, or from ``/Authorize`` ``ACCESS_DENIED`` to a token minted for that
    attempt: a wrong API key, secret key or customer id) or 404 without a FlinksCode (a
    wrong ``base_url`` or ``investments_url``) for ``SETUP_ERRORS`` (3) different logins,
    or ``/GenerateAuthorizeToken`` (no login involved) answered any 401/403 but a
    retryable code, once, whatever the FlinksCode. From then on every call of
    the client fails at once with this error, sending nothing (``stop_on_setup_error``);
    a fan-out, ``flinks-async pull`` and a queue worker stop with it. The message says what
    to check; ``flinks_code`` and ``http_status`` are those of the answer that tripped it.
    It is also an :class:`AccessDeniedError` (401/403) or an :class:`InvalidRequestError`
    (404), as each such answer was before the breaker tripped."""

    def __str__(self) -> str:
        return self.message  # it says the status, the code and what to check


class _AccessSetupError(SetupError, AccessDeniedError):
    """A :class:`SetupError` from 401/403: still an :class:`AccessDeniedError`, as each
    answer was before the breaker tripped (code catching that keeps working)."""


class _NotFoundSetupError(SetupError, InvalidRequestError):
    """A :class:`SetupError` from a 404 without a FlinksCode: still an
    :class:`InvalidRequestError`."""


def setup_error_for(status: int | None) -> type[SetupError]:
    """The class of the :class:`SetupError` for an answer of ``status``."""
    return _NotFoundSetupError if status == 404 else _AccessSetupError


class NotAvailableError(APIError):
    """DISABLED_INSTITUTION or METHOD_NOT_AVAILABLE: not possible on this instance now."""


class NoTransactionsError(APIError):
    """NO_TRANSACTION: the account has no transactions, or fewer than the request needs
    (Flinks documents a minimum of 25 for some products)."""


class MFAError(APIError):
    """The institution's security questions stand in the way: INVALID_SECURITY_RESPONSE (a
    wrong answer to :meth:`~flinks_async.FlinksClient.answer_mfa`: the person may answer
    again), QUESTION_NOT_FOUND (no stored answer for the question asked),
    UNKNOWN_CHALLENGE_KEY (a prompt that was not asked), SECURITYRESPONSES_INCOMPLETE (a
    question left out)."""


class MFARequiredError(MFAError):
    """HTTP 203 from ``/Authorize``: the institution asks MFA questions. Cached-mode calls
    (what this client makes) rarely see it, but real captures show they can. Show the
    ``challenges`` to the person, then send their answers with
    :meth:`~flinks_async.FlinksClient.answer_mfa` (``request_id`` and a ``{prompt:
    answer}`` dict) and continue the data call with the ``request_id`` it returns; a
    follow-up question raises this error again, with the new ``challenges``.

    Attributes:
        challenges: the ``SecurityChallenges`` of the answer, as
            :class:`~flinks_async.SecurityChallenge` (``type``, ``prompt``, ``iterables``).
        request_id: the ``RequestId`` the answers would be sent with.
    """

    def __init__(
        self,
        message: str,
        *,
        challenges: list[SecurityChallenge] | None = None,
        flinks_code: str | None = None,
        http_status: int | None = None,
        login_id: str | None = None,
        request_id: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            flinks_code=flinks_code,
            http_status=http_status,
            login_id=login_id,
            request_id=request_id,
            endpoint=endpoint,
        )
        self.challenges: list[SecurityChallenge] = list(challenges or ())

    def __str__(self) -> str:
        # a 203 carries no FlinksCode: say what it is, not "no FlinksCode (HTTP 203)"
        text = FlinksError.__str__(self)  # the message, then " [endpoint, login ...]"
        message, where = text[: len(self.message)], text[len(self.message) :]
        status = [self.flinks_code] if self.flinks_code else []
        status += [f"HTTP {self.http_status}"] if self.http_status else []
        head = f"MFA required ({', '.join(status)})" if status else "MFA required"
        return (
            f"{head}: {message}; show the questions (.challenges) to the person and send "
            f"the answers with answer_mfa(){where}"
        )


#: The class of each FlinksCode this version knows. What is retried follows from it (see
#: :mod:`flinks_async._retry`): a :class:`TransientAPIError` is, anything else is not.
CODE_CLASSES: dict[str, type[APIError]] = {
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
    "INVALID_USERNAME": LoginError,
    "INVALID_PASSWORD": LoginError,
    "ALREADY_AUTHORIZED": InvalidRequestError,
    "NO_TRANSACTION": NoTransactionsError,
    "INVALID_SECURITY_RESPONSE": MFAError,
    "QUESTION_NOT_FOUND": MFAError,
    "UNKNOWN_CHALLENGE_KEY": MFAError,
    "SECURITYRESPONSES_INCOMPLETE": MFAError,
    "UNAUTHORIZED": AccessDeniedError,
    "ACCESS_DENIED": AccessDeniedError,
    "INVALID_REQUEST": InvalidRequestError,
    "DISABLED_INSTITUTION": NotAvailableError,
    "METHOD_NOT_AVAILABLE": NotAvailableError,
}


def api_error_for(flinks_code: str | None, http_status: int) -> type[APIError]:
    """The exception class for an error answer: by FlinksCode first, then by HTTP status."""
    if flinks_code and flinks_code in CODE_CLASSES:
        return CODE_CLASSES[flinks_code]
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


def drop_tracebacks(error: BaseException | None) -> None:
    """Clear the traceback of ``error`` and of every exception it was caused by or raised
    while handling."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        error.__traceback__ = None
        error = error.__cause__ or error.__context__
