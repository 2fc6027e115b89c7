"""What stops or holds every request of one client, whatever the call (:class:`Guards`).

* **The 429 pause.** Flinks said "too many requests" (HTTP 429 or ``TOO_MANY_REQUESTS``):
  every new request of the client waits ``min(Retry-After, max_retry_after)`` seconds
  (``backoff_initial`` without the header), plus a jitter of up to ``RETRY_AFTER_JITTER``
  of that length so the held requests do not all go out at the same instant.
* **The unreachable breaker** (``unreachable_after``, off by default): that many connection
  attempts in a row fail before the server ever answered: every call raises
  :class:`ServerUnreachableError` at once (a wrong ``base_url``).
* **The set-up breaker** (``stop_on_setup_error``, on by default): an endpoint that never
  answered a 2xx answers 401/403 (``UNAUTHORIZED`` or no FlinksCode; also
  ``ACCESS_DENIED`` from ``/Authorize`` to a token minted for that very attempt, under
  ``FRESH_TOKEN_AGE`` seconds before) or 404 without a FlinksCode for ``SETUP_ERRORS`` (3)
  different logins; or ``/GenerateAuthorizeToken`` answers any 401/403 that is not a
  retryable code, once, whatever its FlinksCode and even after earlier tokens (it carries
  no login: only the secret key or the customer id can be wrong): every call raises
  :class:`SetupError` without sending anything (a wrong key, customer id or base URL).
* **The first token goes alone** (:meth:`Guards.first_alone`, with the set-up breaker):
  until ``/GenerateAuthorizeToken`` has answered a 2xx, one token request is out at a
  time until the first has ended, so that a wrong secret key costs one request, not one
  per login in flight.

* **The package breaker**: an Enrich endpoint that never answered a 2xx answers
  ``METHOD_NOT_AVAILABLE`` (:class:`PackageNotSubscribedError`: not in the
  subscription): from then on every call of *that endpoint* raises it at once, sending
  nothing (the other endpoints go on); a fan-out of it ends.

A tripped breaker calls ``wake()`` (set by the transport) so that calls sleeping before a
retry raise at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
from yarl import URL

from ._config import Settings
from ._enrich_errors import PackageNotSubscribedError
from ._errors import (
    APIError,
    ServerUnreachableError,
    SetupError,
    TransientAPIError,
    setup_error_for,
)
from ._logs import extra, log
from ._retry import RETRY_AFTER_JITTER

if TYPE_CHECKING:
    from ._transport import Request

__all__ = ["FRESH_TOKEN_AGE", "SETUP_ERRORS", "TOKEN_ENDPOINT", "Guards"]

#: different logins answered with a set-up error before :class:`SetupError` trips
SETUP_ERRORS = 3

#: the endpoint that mints authorize tokens: it carries no login, only the secret key
TOKEN_ENDPOINT = "GenerateAuthorizeToken"
#: seconds from minting within which an authorize token is "a moment old": far from its
#: 30-minute expiry, and used nowhere else (single-use), so ``ACCESS_DENIED`` from
#: ``/Authorize`` to it is about the set-up, not about the token
FRESH_TOKEN_AGE = 60.0


class Guards:
    """One client's pause and breakers (see the module docstring)."""

    def __init__(self, settings: Settings, rng: random.Random) -> None:
        self.settings = settings
        self._rng = rng
        #: wakes the calls sleeping before a retry (the transport sets it)
        self.wake: Callable[[], None] = lambda: None
        self.paused_until = 0.0  #: ``time.monotonic()`` until which new requests wait
        self._pause_length = 0.0
        self.answered = False  #: the server has answered at least once
        self._connect_failures = 0
        self.unreachable: ServerUnreachableError | None = None
        #: endpoints that answered a 2xx: the set-up breaker never judges them
        self.working: set[str] = set()
        self._setup_failures: dict[str, set[str]] = {}  # endpoint -> logins refused
        self.setup_error: SetupError | None = None
        #: endpoint -> the PackageNotSubscribedError that stopped it (the package breaker)
        self.unsubscribed: dict[str, PackageNotSubscribedError] = {}
        #: endpoint -> set once its first call (sent alone) has ended (see first_alone)
        self._first_done: dict[str, anyio.Event] = {}

    def count_connect_failure(self, call: Request, exc: BaseException) -> None:
        """Trip the unreachable breaker after ``unreachable_after`` connection failures in
        a row with no answer ever received (then raise its error)."""
        limit = self.settings.unreachable_after
        self._connect_failures += 1
        if limit is None or self._connect_failures < limit or self.unreachable is not None:
            return
        host = URL(call.url).host or "the server"
        self.unreachable = ServerUnreachableError(
            f"{host} never answered: {self._connect_failures} connection attempts in a row "
            f"failed ({type(exc).__name__}: {exc}); check base_url (unreachable_after="
            f"{limit})",
            endpoint=call.endpoint,
        )
        self.unreachable.__cause__ = exc
        self.wake()
        raise self.unreachable

    def count_unsubscribed(self, call: Request, failure: APIError) -> None:
        """The package breaker: stop ``call``'s endpoint on its first
        :class:`PackageNotSubscribedError`, unless it ever answered a 2xx."""
        if isinstance(failure, PackageNotSubscribedError) and call.endpoint not in self.working:
            self.unsubscribed.setdefault(call.endpoint, failure)

    def check(self, call: Request) -> None:
        """Raise the error of a tripped breaker: the unreachable one, the set-up one, or
        the package breaker of ``call``'s endpoint."""
        if self.unreachable is not None:
            raise self.unreachable
        if self.setup_error is not None:
            raise self.setup_error
        if self.unsubscribed:
            self.check_endpoint(call)

    def check_endpoint(self, call: Request) -> None:
        """Raise the package breaker's error for ``call``'s endpoint, if it stopped it."""
        first = self.unsubscribed.get(call.endpoint)
        if first is not None:
            raise PackageNotSubscribedError(
                f"{first.message} (stopped after the first such answer: nothing sent)",
                flinks_code=first.flinks_code,
                http_status=first.http_status,
                login_id=call.login_id,
                request_id=call.request_id,
                endpoint=call.endpoint,
            )

    def setup_in_doubt(self, exc: BaseException) -> bool:
        """Whether ``exc`` is an answer the set-up breaker counts that has not tripped it
        yet (its endpoint never answered a 2xx): it may be the key, not the login, so a
        queue worker retries it later instead of writing a final line."""
        if not isinstance(exc, APIError):
            return False
        if self.setup_counts(exc, self.settings):
            return True
        # an ACCESS_DENIED the breaker counted (/Authorize, to a token a moment old)
        refused = self._setup_failures.get(exc.endpoint or "", ())
        return (
            exc.flinks_code == "ACCESS_DENIED"
            and exc.endpoint not in self.working
            and (exc.login_id or "").lower() in refused
        )

    def setup_counts(self, failure: APIError, s: Settings, *, fresh_token: bool = False) -> bool:
        """Whether the set-up breaker counts ``failure`` (see :class:`SetupError`).

        ``fresh_token``: the request carried an authorize token minted for it under
        ``FRESH_TOKEN_AGE`` seconds before the answer.
        """
        if not s.stop_on_setup_error or isinstance(failure, TransientAPIError):
            return False
        code, status = failure.flinks_code, failure.http_status
        if status in (401, 403) and failure.endpoint == TOKEN_ENDPOINT:
            return True  # no login: the secret key or the customer id, whatever the code
        if failure.endpoint in self.working:
            return False
        if status in (401, 403):
            return code in (None, "UNAUTHORIZED") or (fresh_token and code == "ACCESS_DENIED")
        return status == 404 and code is None

    def count_setup_error(
        self, call: Request, failure: APIError, *, fresh_token: bool = False
    ) -> None:
        """Trip the set-up breaker when this answer, one it counts, makes the set-up error
        plain (then raise its error)."""
        if self.setup_error is not None:  # tripped while this request was out
            raise self.setup_error
        code, status = failure.flinks_code, failure.http_status
        logins = self._setup_failures.setdefault(call.endpoint, set())
        logins.add((call.login_id or "").lower())
        if call.login_id is not None and len(logins) < SETUP_ERRORS:
            return
        if status == 404:
            host = URL(call.url).host or "the server"
            what = f"base_url and investments_url: {host}{URL(call.url).path} does not exist"
        elif call.login_id is None:
            what = "secret_key (FLINKS_SECRET_KEY) and the customer id (FLINKS_CUSTOMER_ID)"
        else:
            what = "api_key (FLINKS_API_KEY), secret_key and the customer id (FLINKS_CUSTOMER_ID)"
        many = f" for {len(logins)} different logins" if call.login_id is not None else ""
        if fresh_token and code == "ACCESS_DENIED":
            many += " with authorize tokens minted for them a moment before"
        said = f'{code or "no FlinksCode"}, "{failure.message[:200]}"'
        history = (
            ", though it had succeeded before (a key revoked or replaced?)"
            if call.endpoint in self.working
            else " and has never succeeded"
        )
        self.setup_error = setup_error_for(status)(
            f"set-up error: {call.endpoint} answered HTTP {status} ({said}){many}"
            f"{history}; check {what}. Every call of this client now stops here",
            flinks_code=code,
            http_status=status,
            endpoint=call.endpoint,
        )
        self.wake()
        raise self.setup_error

    async def first_alone(self, endpoint: str, s: Settings) -> anyio.Event | None:
        """While ``endpoint`` has never answered a 2xx (and the set-up breaker is on), its
        first call goes alone: the others wait here until it has ended (answered, failed
        or been cancelled), then go (or stop at the breaker, if that answer tripped it).

        Returns, to the first call only, the event it must set when it ends (in a
        ``finally``); ``None`` to every other call.
        """
        if not s.stop_on_setup_error or endpoint in self.working:
            return None
        done = self._first_done.get(endpoint)
        if done is None:
            done = self._first_done[endpoint] = anyio.Event()
            return done
        if not done.is_set():
            await done.wait()
        return None

    def pause(self, call: Request, retry_after: float | None, s: Settings) -> None:
        """Hold every new request for ``min(Retry-After, max_retry_after)`` seconds
        (``backoff_initial`` without the header)."""
        length = s.backoff_initial if retry_after is None else min(retry_after, s.max_retry_after)
        now = time.monotonic()
        if length <= 0 or now + length <= self.paused_until:
            return
        if self.paused_until <= now:
            log.info(
                "Flinks answered TOO_MANY_REQUESTS to %s: pausing new requests for %.3fs",
                call.endpoint,
                length,
                extra=extra(self.settings, call, pause=length),
            )
        self.paused_until = now + length
        self._pause_length = length

    async def wait_out_pause(self) -> None:
        """Sleep out the pause, plus its jitter."""
        left = self.paused_until - time.monotonic()
        if left > 0:
            await anyio.sleep(left + self._rng.uniform(0, RETRY_AFTER_JITTER * self._pause_length))
