"""A real aiohttp.web server that behaves like Flinks, faults included.

Endpoints (under ``/v3/{customerId}/BankingServices/`` unless said):
``POST GenerateAuthorizeToken``, ``POST Authorize``, ``DELETE DeleteCard/{loginId}``, the
account-management endpoints (:mod:`flinks_async.testing._accounts`), and
every data endpoint of the client's table (:data:`flinks_async._endpoints.ENDPOINTS`): its
route and its poll route (``POST GetAccountsDetail`` / ``GET
GetAccountsDetailAsync/{requestId}``, ``POST Investments``...), each answered with its
payload function (:data:`PAYLOADS`); and the wealth host's ``POST
/v3/{customerId}/Investments``.

Each login follows a :class:`LoginScenario`: its data requests are answered ``202
OPERATION_PENDING`` ``pending`` times per endpoint, then ``200`` with a deterministic
payload of about ``payload_bytes``. Faults are given per login as strings, applied in
order, each to one request of the login at its stage (``@authorize``, ``@data`` or, by
default, any):

=====================  ===============================================================
``http_NNN``           answer HTTP NNN (an HTML page for 5xx, a JSON envelope otherwise)
``CODE[:s]``           a Flinks error envelope, e.g. ``RETRY_LATER``, ``INVALID_LOGIN``,
                       ``SESSION_NONEXISTENT`` (default stage ``data``); ``:s`` adds
                       ``Retry-After: s``
``rate_limit:s``       HTTP 429 ``TOO_MANY_REQUESTS`` with ``Retry-After: s``
``reset``              abort the connection without answering
``truncate``           send half of the real body, then abort
``html``               a 200 whose body is an HTML page
``wrong_shape``        a 200 whose JSON has the wrong types and no data key (``"Accounts": 7``)
``missing_fields``     a 200 whose JSON object is empty (both: SchemaDriftError, not re-sent)
``slow:s``             wait ``s`` seconds, then answer normally
``silence``            send the headers, then nothing (until the client leaves)
``trickle``            send the body one byte every 50 ms, forever
``gzip``               the real answer, gzip-encoded
``wrong_content_type`` the real answer labelled ``text/plain``
``redirect``           302 to another host
``huge:n``             the 200 payload is ``n`` bytes instead (sticky)
``never_ready``        always 202 (sticky)
=====================  ===============================================================

Webhooks: with ``ready_after`` (seconds) a data request is answered ``202`` until that
long after the session first asked that endpoint, and, with ``webhook_url`` and
``webhook_secret``, the emulator then POSTs the 200 body plus ``ResponseType`` and
``LoginId`` there, signed as Flinks signs (``Base64(HMAC-SHA256(secret, body))`` in the
``flinks-authenticity-key`` header), and delivers again after ``webhook_retry_delay``
seconds on anything but a 200, ``webhook_attempts`` times in all (Flinks: 10, 30 minutes
apart). ``webhook_faults`` (``{spec: probability}``, drawn per login and endpoint from ``seed``):
``drop_first`` (the first attempt is lost on the way), ``duplicate`` (each attempt is sent
twice), ``bad_signature`` (the first attempt is signed with another secret),
``shuffle:s`` (a random delay of up to ``s`` seconds first: deliveries arrive out of
order). Every attempt is kept in :attr:`Emulator.webhooks_sent`.

Everything received is counted (:attr:`Emulator.counts`, :attr:`Emulator.statuses`,
:attr:`Emulator.requests`), and the server tracks its open connections and the handlers
a client abandoned, so tests can check that nothing leaks.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import gzip
import itertools
import random
import re
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, Unpack

import msgspec
from aiohttp import web

from .._endpoints import ENDPOINTS, Endpoint, Route
from . import _accounts
from ._enrich import (
    ENRICH_OPS,
    ENRICH_ROWS,
    EnrichGate,
    add_routes,
    custom_answer,
    refusal,
    static_answer,
)
from ._enrich_payloads import ATTRIBUTE_PAYLOADS
from ._payloads import accounts_payload, investments_payload, statements_payload

__all__ = [
    "SANDBOX_MFA",
    "Emulator",
    "Fault",
    "LoginScenario",
    "RecordedRequest",
    "WebhookSent",
    "busiest_window",
]

_STATUS_OF_CODE = {
    "SESSION_NONEXISTENT": 400,
    "SESSION_EXPIRED": 400,
    "CARD_IN_USE": 400,
    "CONCURRENT_SESSION": 400,
    "RETRY_LATER": 401,
    "TOO_MANY_REQUESTS": 403,
    "AGGREGATION_ERROR": 500,
    "INVALID_LOGIN": 401,
    "DISABLED_LOGIN": 401,
    "ACCESS_DENIED": 401,
    "INVALID_REQUEST": 400,
    "UNAUTHORIZED": 401,
    "NEW_ACCOUNT": 400,
    "DISABLED_INSTITUTION": 405,
    "METHOD_NOT_AVAILABLE": 400,
    # the statuses of these are not documented [U]: 400/401 as their kin
    "INVALID_USERNAME": 401,
    "INVALID_PASSWORD": 401,
    "INVALID_SECURITY_RESPONSE": 401,
    "QUESTION_NOT_FOUND": 400,
    "UNKNOWN_CHALLENGE_KEY": 400,
    "SECURITYRESPONSES_INCOMPLETE": 400,
    "ALREADY_AUTHORIZED": 400,
    "NO_TRANSACTION": 400,
}
_STICKY = {"never_ready", "huge"}
_COOKIES = itertools.count(0x5EED0000)  # a distinct session cookie value per answer
_ENCODE = msgspec.json.encode
#: the 200 payload of each data endpoint (by Flinks name): ``(size, variant) -> JSON bytes``
PAYLOADS: dict[str, Callable[[int, int], bytes]] = {
    "Investments": investments_payload,
    "GetAccountsDetail": lambda size, variant: accounts_payload(size, variant, True),
    "GetAccountsSummary": lambda size, variant: accounts_payload(size, variant, False),
    "GetStatements": statements_payload,
    **ATTRIBUTE_PAYLOADS,  # Enrich's (flinks_async.testing._enrich)
}
#: the data routes, from the client's endpoint table: by the path's first segment, each
#: route with its endpoint, and whether it is the poll
_ROUTES: dict[str, list[tuple[Route, Endpoint[Any, ..., ...], bool]]] = collections.defaultdict(
    list
)
for _row in ENDPOINTS.values():
    for _r, _polled in ((_row.route, False), (_row.poll, True)):
        if _r is not None and _r.root == "banking":
            _ROUTES[_r.head].append((_r, _row, _polled))
_ROWS = {row.flinks_name: row for row in ENDPOINTS.values()}


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One fault: ``kind`` (see the module table), ``arg`` (seconds or bytes), ``stage``."""

    kind: str
    arg: float = 0.0
    stage: str = "any"

    @classmethod
    def parse(cls, spec: str | Fault) -> Fault:
        """``"kind[:arg][@stage]"`` -> :class:`Fault`."""
        if isinstance(spec, Fault):
            return spec
        text, _, stage = spec.partition("@")
        kind, _, arg = text.partition(":")
        if not stage:
            stage = "data" if kind in ("SESSION_NONEXISTENT", "SESSION_EXPIRED") else "any"
        if stage not in ("any", "authorize", "data"):
            raise ValueError(f"bad fault stage in {spec!r}")
        known = (
            kind in _STATUS_OF_CODE
            or kind.startswith("http_")
            or kind
            in {
                "rate_limit",
                "reset",
                "truncate",
                "html",
                "wrong_shape",
                "missing_fields",
                "slow",
                "silence",
                "trickle",
                "gzip",
                "wrong_content_type",
                "redirect",
                "huge",
                "never_ready",
            }
        )
        if not known:
            raise ValueError(f"unknown fault {spec!r}")
        return cls(kind, float(arg) if arg else 0.0, stage)


@dataclasses.dataclass(slots=True)
class LoginScenario:
    """How the emulator treats one login."""

    pending: int = 2
    payload_bytes: int = 20_000
    faults: list[Fault] = dataclasses.field(default_factory=list)
    never_ready: bool = False
    #: the body to send verbatim, by endpoint family (``"Investments"``,
    #: ``"GetAccountsDetail"``..., ``"Authorize"``), instead of a generated payload: the 200
    #: body, or ``(status, body)`` for another status
    payloads: dict[str, bytes | tuple[int, bytes]] = dataclasses.field(default_factory=dict)
    #: MFA rounds asked by ``/Authorize`` (203) until answered: each round a tuple of
    #: ``(prompt, answer)``; a later round is a follow-up question
    mfa: tuple[tuple[tuple[str, str], ...], ...] = ()

    @classmethod
    def make(
        cls, pending: int = 2, payload_bytes: int = 20_000, faults: Iterable[str | Fault] = ()
    ) -> LoginScenario:
        parsed = [Fault.parse(f) for f in faults]
        scenario = cls(pending, payload_bytes)
        for f in parsed:
            if f.kind == "never_ready":
                scenario.never_ready = True
            elif f.kind == "huge":
                scenario.payload_bytes = int(f.arg)
            else:
                scenario.faults.append(f)
        return scenario


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What the emulator received (headers as sent, for assertions on credentials)."""

    method: str
    endpoint: str
    login_id: str | None
    request_id: str | None
    headers: Mapping[str, str] = dataclasses.field(repr=False)
    status: int = 0
    received_at: float = 0.0  #: ``time.monotonic()`` when the request arrived
    path: str = ""  #: the URL path as received, e.g. ``/v3/{customer}/Investments``


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookSent:
    """One webhook attempt the emulator made."""

    request_id: str
    login_id: str
    response_type: str
    attempt: int  #: from 1
    sent_at: float  #: ``time.time()`` as it was sent (comparable across processes)
    status: int  #: the receiver's answer, 0 when none came (dropped, refused connection)


_WEBHOOK_FAULTS = ("drop_first", "duplicate", "bad_signature", "shuffle")


#: The sandbox's questions (FlinksCapital): two at first, then a follow-up
SANDBOX_MFA: tuple[tuple[tuple[str, str], ...], ...] = (
    (
        ("What city were you born in?", "Montreal"),
        ("What is the best country on earth?", "Canada"),
    ),
    (("What shape do people like most?", "Triangle"),),
)


class _Login:
    __slots__ = ("faults", "mfa_done", "pending_body", "polls", "ready_at", "scenario")

    def __init__(self, scenario: LoginScenario) -> None:
        self.scenario = scenario
        self.mfa_done = False  # answered once: the institution does not ask again
        self.faults = collections.deque(scenario.faults)
        self.polls: collections.Counter[str] = collections.Counter()
        #: with ``ready_after``: when the answer of each (family, requestId) is ready
        self.ready_at: dict[tuple[str, str], float] = {}
        #: the last 202 body encoded, by (family, requestId): polls answer it as it is
        self.pending_body: tuple[tuple[str, str], bytes] | None = None


class Emulator:
    """The Flinks emulator. ``async with Emulator() as emu:`` serves on ``emu.url``.

    Args:
        pending: 202 answers per login and endpoint before the 200 (default 2).
        payload_bytes: approximate size of each 200 payload (default 20 000).
        scenarios: per-login :class:`LoginScenario` (others get the defaults).
        fault_rates: ``{fault spec: probability}``; each login not in ``scenarios`` draws
            each fault with its probability, deterministically from ``seed`` and its id.
        seed: for ``fault_rates`` and ``mfa_rate``.
        mfa_rate: each login not in ``scenarios`` asks the sandbox's MFA questions
            (:data:`SANDBOX_MFA`, as ``set_login(login, mfa=True)``) with this probability,
            drawn like the faults (default 0).
        api_key: when set, data endpoints demand this ``x-api-key`` (else 401 UNAUTHORIZED).
        secret_key: when set, ``GenerateAuthorizeToken`` demands it as ``flinks-auth-key``
            and ``Authorize`` demands a fresh single-use token.
        wrong_secret_code: the FlinksCode ``GenerateAuthorizeToken`` answers a wrong
            secret key with (default ``UNAUTHORIZED``; ``ACCESS_DENIED``, the code Flinks
            documents for refused credentials, is another), with the HTTP status
            ``wrong_secret_status`` (default: the code's usual status, 401 for both).
        wrong_secret_status: see ``wrong_secret_code``.
        customer_id: when set, other customer ids get 401 UNAUTHORIZED.
        latency: seconds added to every answer (default 0).
        host: the address to listen on (default ``127.0.0.1``: loopback only).
        port: the port (default 0: a free one; read :attr:`port` after start).
        ssl_context: serve HTTPS with this server context (e.g. from ``trustme``).
        record: how many :class:`RecordedRequest` to keep (default 100 000; 0 keeps none).
        ready_after: seconds a session's data request stays pending (``202``) from its
            first ask, instead of ``pending`` answers; needed for webhooks.
        ready_spread: each login's answers are ready up to this many seconds later still
            (uniform, drawn per login and endpoint from ``seed``; default 0), as real
            logins finish at different times.
        webhook_url: where to POST webhooks (with ``ready_after`` and ``webhook_secret``).
        webhook_secret: the HMAC secret webhooks are signed with.
        webhook_header: the signature's header (default ``flinks-authenticity-key``).
        webhook_attempts: deliveries of one webhook at most (default 10, as Flinks).
        webhook_retry_delay: seconds between them (default 1800, as Flinks).
        webhook_faults: ``{spec: probability}``, see the module docstring.
        scheduled_refresh_rate: the share of logins whose nightly refresh is on (1.0),
            drawn per login from ``seed`` (see :mod:`flinks_async.testing._accounts`).
        ineligible_rate: the share of those that ``GetNightlyRefreshStatus`` lists as no
            longer eligible (0), with realistic states and error codes.
        institutions: how many institutions ``GET Institutions`` pages through (3000).
        nightly_refresh_key: when set, ``GetNightlyRefreshStatus`` demands it as
            ``Authorization: Bearer``.
    """

    def __init__(
        self,
        *,
        pending: int = 2,
        payload_bytes: int = 20_000,
        scenarios: Mapping[str, LoginScenario] | None = None,
        fault_rates: Mapping[str, float] | None = None,
        seed: int = 0,
        api_key: str | None = None,
        secret_key: str | None = None,
        wrong_secret_code: str = "UNAUTHORIZED",
        wrong_secret_status: int | None = None,
        customer_id: str | None = None,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        record: int = 100_000,
        ssl_context: ssl.SSLContext | None = None,
        ready_after: float | None = None,
        ready_spread: float = 0.0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_header: str = "flinks-authenticity-key",
        webhook_attempts: int = 10,
        webhook_retry_delay: float = 1800.0,
        webhook_faults: Mapping[str, float] | None = None,
        mfa_rate: float = 0.0,
        enrich: EnrichGate | None = None,
        **accounts: Unpack[_accounts.AccountOptions],
    ) -> None:
        if not 0 <= mfa_rate <= 1:
            raise ValueError(f"mfa_rate is a probability (0 to 1), got {mfa_rate}")
        self.mfa_rate = mfa_rate
        self.pending = pending
        self.payload_bytes = payload_bytes
        self.scenarios: dict[str, LoginScenario] = {
            k.lower(): v for k, v in (scenarios or {}).items()
        }
        self.fault_rates = {k: v for k, v in (fault_rates or {}).items() if v > 0}
        for spec in self.fault_rates:
            Fault.parse(spec)
        self.seed = seed
        self.api_key, self.secret_key = api_key, secret_key
        self.wrong_secret_code = wrong_secret_code
        self.wrong_secret_status = wrong_secret_status
        self.customer_id, self.latency = customer_id, latency
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self._records(record)
        self.ready_after, self.ready_spread = ready_after, ready_spread
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.webhook_header, self.webhook_attempts = webhook_header, webhook_attempts
        self.webhook_retry_delay = webhook_retry_delay
        self.webhook_faults = {k: v for k, v in (webhook_faults or {}).items() if v > 0}
        for spec in self.webhook_faults:
            if spec.partition(":")[0] not in _WEBHOOK_FAULTS:
                raise ValueError(f"unknown webhook fault {spec!r}")
        self._runner: web.AppRunner | None = None
        self.accounts = _accounts.Accounts(seed=seed, **accounts)  #: account management
        self.enrich = enrich or EnrichGate(None, 480.0)

    def _records(self, record: int) -> None:
        """What the emulator records and keeps, empty (see the class's attributes)."""
        self.counts: collections.Counter[str] = collections.Counter()
        #: Authorize requests received per login id (lower-cased): "pulled twice" counted
        #: where Flinks counts it
        self.authorizations: collections.Counter[str] = collections.Counter()
        #: sessions waiting for MFA answers: RequestId -> (login id, round asked)
        self._mfa_sessions: dict[str, tuple[str, int]] = {}
        self.statuses: collections.Counter[int] = collections.Counter()
        self.faults_injected: collections.Counter[str] = collections.Counter()
        self.requests: collections.deque[RecordedRequest] = collections.deque(maxlen=record)
        self.requests_total = 0
        self.active = 0
        self.peak_active = 0
        self.peak_connections = 0
        self.abandoned = 0
        self.deleted: set[str] = set()
        self._logins: dict[str, _Login] = {}
        self._sessions: dict[str, str] = {}
        self._tokens: dict[str, float] = {}  # token -> when it was issued
        #: seconds each used authorize token waited between its issue and its Authorize
        self.token_ages: list[float] = []
        #: every webhook attempt made, in order
        self.webhooks_sent: list[WebhookSent] = []
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self._webhook_session: Any = None

    # --- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give ``FlinksClient(base_url=...)``."""
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """Client connections open on the server right now (idle keep-alive ones included)."""
        server = self._runner.server if self._runner else None
        return len(server.connections) if server is not None else 0

    def max_requests_in_window(self, window: float = 1.0) -> int:
        """The most recorded requests that arrived within any ``window`` seconds (a
        half-open sliding window ``[t, t + window)``): what a per-second quota sees."""
        return busiest_window([r.received_at for r in self.requests], window)

    def app(self) -> web.Application:
        """The aiohttp application (to mount it elsewhere)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        deep = sorted({h for h, rs in _ROUTES.items() for r, *_ in rs if r.path.count("/") > 1})
        for op in deep:  # a data route of several segments: the rest is checked in _route
            path = "/v3/{customer}/BankingServices/{op:" + re.escape(op) + "}/{arg:.+}"
            app.router.add_route("*", path, self._handle)
        path = "/v3/{customer}/BankingServices/{op:Institutions}/{arg:.+}"
        app.router.add_route("*", path, self._handle)  # .../RoutingNumber/{n}
        app.router.add_route("*", "/v3/{customer}/BankingServices/{op}", self._handle)
        app.router.add_route("*", "/v3/{customer}/BankingServices/{op}/{arg}", self._handle)
        app.router.add_route("POST", "/v3/{customer}/Investments", self._handle)
        app.router.add_route("GET", "/_emulator/stats", self._stats)
        add_routes(app, self._handle)  # Enrich's, under the customer root
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        """``GET /_emulator/stats``: what the server received so far, for a test or a
        benchmark running the emulator in another process (not a Flinks endpoint, not
        counted): ``requests_total``, ``counts`` by endpoint, ``statuses``, ``active``
        (handlers running), ``logins`` (seen), ``authorize_per_login`` (how many logins
        were authorized once, twice, ...: ``{"1": 590, "2": 10}``)."""
        return _json(
            {
                "requests_total": self.requests_total,
                "counts": dict(self.counts),
                "statuses": {str(k): v for k, v in self.statuses.items()},
                "active": self.active,
                "logins": len(self._logins),
                "authorize_per_login": {
                    str(n): k
                    for n, k in sorted(collections.Counter(self.authorizations.values()).items())
                },
            }
        )

    async def start(self) -> None:
        """Start serving; :attr:`port` holds the port afterwards."""
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, backlog=4096, ssl_context=self.ssl_context).start()

    async def stop(self) -> None:
        """Stop serving and close every connection (webhooks not yet delivered are
        dropped)."""
        for task in list(self._webhook_tasks):
            task.cancel()
        if self._webhook_tasks:
            await asyncio.gather(*self._webhook_tasks, return_exceptions=True)
        if self._webhook_session is not None:
            await self._webhook_session.close()
            self._webhook_session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- scenarios -------------------------------------------------------------------

    def set_login(
        self,
        login_id: str,
        *,
        pending: int | None = None,
        payload_bytes: int | None = None,
        faults: Iterable[str | Fault] = (),
        payloads: Mapping[str, bytes | tuple[int, bytes]] | None = None,
        mfa: bool | Sequence[Sequence[tuple[str, str]]] = False,
    ) -> None:
        """Give one login its own scenario (resets what the emulator knew of it).

        ``mfa``: ``/Authorize`` answers ``203`` with ``SecurityChallenges`` until they are
        answered (Authorize again with the ``RequestId`` and ``SecurityResponses``:
        ``{prompt: [answer]}``, case-insensitive), one round at a time; ``True`` asks the
        sandbox's questions (:data:`SANDBOX_MFA`: two, then a follow-up), or give rounds of
        ``(prompt, answer)``. A wrong answer is ``401 INVALID_SECURITY_RESPONSE`` (the round
        may be answered again), an unknown prompt ``UNKNOWN_CHALLENGE_KEY``, a missing one
        ``SECURITYRESPONSES_INCOMPLETE``. Once answered, the login opens sessions as usual.

        ``payloads`` maps an endpoint (``"Investments"``, ``"GetAccountsDetail"``,
        ``"GetAccountsSummary"``, ``"GetStatements"``, ``"Authorize"``) to the exact body to
        answer with, e.g. a response sample of your own: a 200 body, or ``(status, body)``
        (a ``203`` MFA answer, an error envelope). A data endpoint answers it after its
        ``pending`` 202s; an ``Authorize`` 200 opens the session named by the body's
        ``RequestId``. Other endpoints get generated data.
        """
        scenario = LoginScenario.make(
            self.pending if pending is None else pending,
            self.payload_bytes if payload_bytes is None else payload_bytes,
            faults,
        )
        scenario.payloads = dict(payloads or {})
        if mfa:
            rounds = SANDBOX_MFA if mfa is True else mfa
            scenario.mfa = tuple(tuple((p, a) for p, a in one) for one in rounds)
        self.scenarios[login_id.lower()] = scenario
        self._logins.pop(login_id.lower(), None)

    def scenario(self, login_id: str) -> LoginScenario:
        """The scenario of ``login_id``: given, drawn from ``fault_rates``, or the default."""
        key = login_id.lower()
        if key in self.scenarios:
            return self.scenarios[key]
        faults: list[str] = []
        if self.fault_rates:
            rng = random.Random(f"{self.seed}:{key}")
            faults = [spec for spec, p in self.fault_rates.items() if rng.random() < p]
        scenario = LoginScenario.make(self.pending, self.payload_bytes, faults)
        if self.mfa_rate and random.Random(f"{self.seed}:mfa:{key}").random() < self.mfa_rate:
            scenario.mfa = SANDBOX_MFA
        return scenario

    def _login(self, login_id: str) -> _Login:
        key = login_id.lower()
        state = self._logins.get(key)
        if state is None:
            state = self._logins[key] = _Login(self.scenario(key))
        return state

    # --- request handling ------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received_at = time.monotonic()
        self.requests_total += 1
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        server = self._runner.server if self._runner else None
        if server is not None:
            self.peak_connections = max(self.peak_connections, len(server.connections))
        status = 0
        endpoint = request.match_info.get("op") or request.match_info.route.name or "Investments"
        login_id, request_id = None, None
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            endpoint, login_id, request_id, response = await self._route(request)
            status = response.status
            if not response.prepared:  # a session cookie, as real servers set: never sent back
                response.headers["Set-Cookie"] = f"flinks_session={next(_COOKIES):x}; HttpOnly"
            return response
        except asyncio.CancelledError:
            self.abandoned += 1  # the client went away mid-answer
            raise
        except ConnectionResetError:  # it went away as the answer was being written: a
            # client's deadline, a cancelled call; a server takes it quietly (no ERROR logged)
            self.abandoned += 1
            return web.Response(status=599)  # never reaches the client
        finally:
            self.active -= 1
            self.counts[endpoint] += 1
            self.statuses[status] += 1
            if self.requests.maxlen:
                self.requests.append(
                    RecordedRequest(
                        request.method,
                        endpoint,
                        login_id,
                        request_id,
                        dict(request.headers),
                        status,
                        received_at,
                        request.path,
                    )
                )

    async def _route(
        self, request: web.Request
    ) -> tuple[str, str | None, str | None, web.StreamResponse]:
        op = request.match_info.get("op") or request.match_info.route.name or "Investments"
        arg = request.match_info.get("arg")
        if self.customer_id and request.match_info["customer"] != self.customer_id:
            return op, None, None, _error("UNAUTHORIZED", "Unknown customer")
        body: dict[str, Any] = {}
        if request.method in ("POST", "PATCH") and request.can_read_body:
            try:
                body = msgspec.json.decode(await request.read())
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                return op, None, None, _error("INVALID_REQUEST", "Body is not JSON")
            if not isinstance(body, dict):
                return op, None, None, _error("INVALID_REQUEST", "Body is not an object")
        if op in ENRICH_OPS:
            return await self._enrich_data(request, op, body)
        if op == "GenerateAuthorizeToken" and request.method == "POST":
            return op, None, None, self._token(request)
        if op == "Authorize" and request.method == "POST":
            login_id = body.get("LoginId")
            if isinstance(login_id, str):
                self.authorizations[login_id.lower()] += 1
            return op, login_id, None, await self._authorize(request, login_id, body)
        managed = self._manage(request, op, arg, body)
        if managed is not None:  # DeleteCard and the other account-management calls
            return managed
        routes = _ROUTES.get(op)
        if not routes:
            return op, None, None, _error("METHOD_NOT_AVAILABLE", f"No endpoint {op}", 404)
        found = [r for r in routes if r[0].method == request.method]
        if not found:
            return op, None, None, _error("INVALID_REQUEST", "Wrong method", 405)
        route, row, _ = found[0]
        family = row.flinks_name
        tail = f"{op}/{arg}" if arg is not None else op
        matched = route.pattern().match(tail)
        params = matched.groupdict() if matched else {}
        request_id = (
            params.get("requestId") if "requestId" in route.params else body.get("RequestId")
        )
        if not isinstance(request_id, str):
            request_id = None
        if not self._api_key_ok(request):
            return op, None, request_id, _error("UNAUTHORIZED", "Invalid API key")
        login_id = self._sessions.get(request_id or "")
        if login_id is None or request_id is None:
            return (
                op,
                None,
                request_id,
                _error("SESSION_NONEXISTENT", "The RequestId does not exist", rid=request_id),
            )
        answer = await self._data(request, family, login_id, request_id)
        if family == "GetAccountsDetail":  # Enrich may ask this session once it is done
            self.enrich.detail_answered(request_id, answer.status)
        return op, login_id, request_id, answer

    async def _enrich_data(
        self, request: web.Request, family: str, body: Mapping[str, Any]
    ) -> tuple[str, str | None, str | None, web.StreamResponse]:
        """An Enrich request (:mod:`flinks_async.testing._enrich`): the session, the
        gate (subscription, window, 202s), the custom POST's refusals, then the answer."""
        rid = request.match_info.get("requestId")
        path_login = request.match_info.get("loginId")
        if not self._api_key_ok(request):
            return family, None, rid, _error("UNAUTHORIZED", "Invalid API key")
        static = static_answer(family, request)
        if static is not None or family not in ENRICH_ROWS:
            return family, None, None, static or _error("INVALID_REQUEST", "Unknown", 404)
        login_id = self._sessions.get(rid or "")
        if login_id is None or rid is None:
            message = "The RequestId does not exist"
            return family, path_login, rid, _error("SESSION_NONEXISTENT", message, rid=rid)
        ready = self._login(login_id).ready_at.get(("GetAccountsDetail", rid))
        if ready is not None and ready <= time.monotonic():  # with ready_after: its webhook
            self.enrich.detail_done(rid)  # is the detail's answer, not a polled 200
        sc = self._login(login_id).scenario
        timed = self.ready_after is not None or sc.never_ready  # done by time (or never)
        gate = self.enrich.before(
            family, login_id, path_login, rid, 1 << 30 if timed else sc.pending
        )
        if gate == "pending":
            return family, login_id, rid, _pending(rid)
        if isinstance(gate, tuple):
            code, message = gate
            if code == "SESSION_EXPIRED":
                self._sessions.pop(rid, None)
            status = 403 if code == "METHOD_NOT_AVAILABLE" else None  # [U] our choice
            return family, login_id, rid, _error(code, message, status, rid=rid)
        refused = None
        if request.method == "POST":
            detail = _ready_body(self._login(login_id).scenario, "GetAccountsDetail", login_id, rid)
            accounts = msgspec.json.decode(detail).get("Accounts") or []
            refused = refusal(body, {a.get("Id") for a in accounts})
        if refused is not None:
            return family, login_id, rid, _error("INVALID_REQUEST", refused, rid=rid)
        answer = await self._data(request, family, login_id, rid)
        self.enrich.served(family, login_id, rid, answer.status)
        if request.method == "POST" and answer.status == 200:
            answer = custom_answer(body, login_id)
        return family, login_id, rid, answer

    def _manage(
        self, request: web.Request, op: str, arg: str | None, body: Mapping[str, Any]
    ) -> tuple[str, str | None, str | None, web.StreamResponse] | None:
        """``DELETE DeleteCard/{loginId}`` and the account-management calls
        (:mod:`~flinks_async.testing._accounts`); ``None`` for another request."""
        if op == "DeleteCard" and request.method == "DELETE" and arg:
            if not self._api_key_ok(request):
                return op, arg, None, _error("UNAUTHORIZED", "Invalid API key")
            if arg.lower() in self.deleted:  # [U]: as Authorize answers a deleted login
                return op, arg, None, _error("INVALID_LOGIN", "The login was deleted")
            self.deleted.add(arg.lower())
            removed = f"All of the information about LoginId {arg} has been removed"
            return op, arg, None, _json({"StatusCode": 200, "Message": removed})
        auth = request.headers.get("Authorization", "")
        managed = _accounts.route(self.accounts, request.method, op, arg, body, request.query, auth)
        if managed is None:
            return None
        if not self._api_key_ok(request) and op != "GetNightlyRefreshStatus":
            return op, None, None, _error("UNAUTHORIZED", "Invalid API key")
        return op, managed[0], None, _json(managed[2], managed[1])

    def _token(self, request: web.Request) -> web.StreamResponse:
        """``POST /GenerateAuthorizeToken``: a single-use token, for the right secret key."""
        if self.secret_key and request.headers.get("flinks-auth-key") != self.secret_key:
            return _error(self.wrong_secret_code, "Invalid secret key", self.wrong_secret_status)
        token = str(uuid.uuid4())
        self._tokens[token] = time.monotonic()
        return _json({"HttpStatusCode": 200, "Token": token})

    def _api_key_ok(self, request: web.Request) -> bool:
        return not self.api_key or request.headers.get("x-api-key") == self.api_key

    async def _authorize(
        self, request: web.Request, login_id: Any, body: Mapping[str, Any]
    ) -> web.StreamResponse:
        if self.secret_key:
            token = request.headers.get("flinks-auth-key", "")
            issued = self._tokens.pop(token, None)
            if issued is None:
                return _error("UNAUTHORIZED", "Invalid or used authorize token")
            self.token_ages.append(time.monotonic() - issued)
        if not isinstance(login_id, str) or len(login_id) != 36:
            return _error("INVALID_LOGIN", "Invalid LoginId")
        if login_id.lower() in self.deleted:
            return _error("INVALID_LOGIN", "The login was deleted")
        state = self._login(login_id)
        if state.scenario.mfa and not state.mfa_done:
            return self._mfa(state, login_id, body)
        fault = self._take_fault(state, "authorize")
        rid = str(uuid.uuid4())

        def answer() -> web.StreamResponse:
            given = state.scenario.payloads.get("Authorize")
            if given is not None:
                status, body = given if isinstance(given, tuple) else (200, given)
                if status == 200:
                    self._sessions[msgspec.json.decode(body)["RequestId"]] = login_id
                return _verbatim(given)
            self._sessions[rid] = login_id
            return _json(self.accounts.authorized(_authorization(login_id, rid)))

        return await self._respond(request, fault, answer, rid)

    def _mfa(self, state: _Login, login_id: str, body: Mapping[str, Any]) -> web.Response:
        """An MFA login's Authorize: ask the current round, or check its answers."""
        rounds = state.scenario.mfa
        given = body.get("SecurityResponses")
        rid = body.get("RequestId")
        if given is None:  # a first Authorize: a new session, asked the first round
            rid = str(uuid.uuid4())
            self._mfa_sessions[rid] = (login_id.lower(), 0)
            return _challenge(rid, rounds[0])
        asked = self._mfa_sessions.get(rid) if isinstance(rid, str) else None
        if asked is None or asked[0] != login_id.lower() or not isinstance(given, dict):
            return _error("INVALID_REQUEST", "No MFA question is pending for this RequestId")
        assert isinstance(rid, str)
        expected = {p.lower(): a.lower() for p, a in rounds[asked[1]]}
        answers: dict[str, list[str]] = {}
        for prompt, value in given.items():
            values = value if isinstance(value, list) else [value]
            answers[str(prompt).lower()] = [str(v).strip().lower() for v in values]
        if set(answers) - set(expected):
            return _error("UNKNOWN_CHALLENGE_KEY", "A prompt that was not asked", rid=rid)
        if set(expected) - set(answers):
            return _error("SECURITYRESPONSES_INCOMPLETE", "Answer every question", rid=rid)
        if any(expected[p] not in answers[p] for p in expected):
            return _error("INVALID_SECURITY_RESPONSE", "The answer is not valid", rid=rid)
        if asked[1] + 1 < len(rounds):  # a follow-up question, same session
            self._mfa_sessions[rid] = (asked[0], asked[1] + 1)
            return _challenge(rid, rounds[asked[1] + 1])
        del self._mfa_sessions[rid]
        state.mfa_done = True
        self._sessions[rid] = login_id
        return _json(_authorization(login_id, rid))

    async def _data(
        self, request: web.Request, family: str, login_id: str, rid: str
    ) -> web.StreamResponse:
        state = self._login(login_id)
        fault = self._take_fault(state, "data")
        if fault is not None and fault.kind in ("SESSION_NONEXISTENT", "SESSION_EXPIRED"):
            self._sessions.pop(rid, None)

        if self.ready_after is not None and (family, rid) not in state.ready_at:
            spread = random.Random(f"{self.seed}:ready:{login_id.lower()}:{family}")
            delay = self.ready_after + spread.uniform(0, self.ready_spread)
            state.ready_at[family, rid] = time.monotonic() + delay
            pushed = _ROWS[family].response_type  # Enrich's answers are never pushed
            if (
                self.webhook_url
                and self.webhook_secret
                and pushed
                and not state.scenario.never_ready
            ):
                self._webhook_soon(state, family, login_id, rid)

        def pending() -> bool:
            sc = state.scenario
            if sc.never_ready:
                return True
            if self.ready_after is not None:
                return time.monotonic() < state.ready_at[family, rid]
            return state.polls[family] < sc.pending

        def answer() -> web.StreamResponse:
            sc = state.scenario
            if pending():
                state.polls[family] += 1
                cached = state.pending_body
                if cached is None or cached[0] != (family, rid):
                    # encoded once per session: thousands of pollers ask again and again
                    body = _ENCODE(
                        {
                            "FlinksCode": "OPERATION_PENDING",
                            "HttpStatusCode": 202,
                            "Message": "Your operation is still processing",
                            "RequestId": rid,
                            "Links": [
                                {
                                    "rel": f"{family}Async",
                                    "href": f"/{family}Async",
                                    "example": f"/{family}Async/{rid}",
                                }
                            ],
                        }
                    )
                    cached = state.pending_body = ((family, rid), body)
                return web.Response(body=cached[1], status=202, content_type="application/json")
            if family in sc.payloads:
                return _verbatim(sc.payloads[family])
            return web.Response(
                body=_ready_body(sc, family, login_id, rid), content_type="application/json"
            )

        return await self._respond(request, fault, answer, rid)

    # --- webhooks --------------------------------------------------------------------

    def _webhook_soon(self, state: _Login, family: str, login_id: str, rid: str) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(state, family, login_id, rid))
        self._webhook_tasks.add(task)
        task.add_done_callback(self._webhook_tasks.discard)

    def _webhook_body(self, state: _Login, family: str, login_id: str, rid: str) -> bytes:
        given = state.scenario.payloads.get(family)
        body = given if isinstance(given, bytes) else None
        if body is None:
            body = _ready_body(state.scenario, family, login_id, rid)
        kind = (_ROWS[family].response_type or family).encode()
        head = b'{"ResponseType":"%s","LoginId":"%s",' % (kind, login_id.encode())
        if b'"RequestId"' not in body:  # a verbatim payload of the test's: say which session
            head += b'"RequestId":"%s",' % rid.encode()
        return head + body.lstrip()[1:]

    async def _deliver(self, state: _Login, family: str, login_id: str, rid: str) -> None:
        """Wait until the answer is ready, then POST it, again on anything but a 200."""
        import aiohttp

        from .._webhooks import sign

        assert self.ready_after is not None and self.webhook_url and self.webhook_secret
        rng = random.Random(f"{self.seed}:webhook:{login_id.lower()}:{family}")
        faults = {
            spec.partition(":")[0]: float(spec.partition(":")[2] or 0)
            for spec, p in self.webhook_faults.items()
            if rng.random() < p
        }
        ready_in = state.ready_at[family, rid] - time.monotonic()
        await asyncio.sleep(ready_in + rng.uniform(0, faults.get("shuffle", 0.0)))
        body = self._webhook_body(state, family, login_id, rid)
        if self._webhook_session is None:
            # no connection limit: a webhook waits for nothing of the emulator's own
            self._webhook_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        session = self._webhook_session
        for attempt in range(1, self.webhook_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.webhook_retry_delay)
            first = attempt == 1
            secret = self.webhook_secret
            if first and "bad_signature" in faults:
                secret = "not-" + secret
            headers = {self.webhook_header: sign(body, secret), "Content-Type": "application/json"}
            status = 0
            for _ in range(2 if "duplicate" in faults else 1):
                sent_at = time.time()
                if not (first and "drop_first" in faults):
                    try:
                        # a redirect is a failed delivery, as webhook senders treat it
                        async with session.post(
                            self.webhook_url, data=body, headers=headers, allow_redirects=False
                        ) as r:
                            await r.read()
                            status = r.status
                    except (TimeoutError, aiohttp.ClientError, OSError):
                        status = 0
                self.webhooks_sent.append(
                    WebhookSent(rid, login_id, family, attempt, sent_at, status)
                )
            if status == 200:
                return

    def _take_fault(self, state: _Login, stage: str) -> Fault | None:
        if state.faults and state.faults[0].stage in ("any", stage):
            fault = state.faults.popleft()
            self.faults_injected[fault.kind] += 1
            return fault
        return None

    async def _respond(
        self,
        request: web.Request,
        fault: Fault | None,
        answer: Callable[[], web.StreamResponse],
        rid: str,
    ) -> web.StreamResponse:
        """The normal ``answer()``, or what ``fault`` makes of it."""
        if fault is None:
            return answer()
        kind, arg = fault.kind, fault.arg
        if kind in _STATUS_OF_CODE:
            headers = {"Retry-After": _num(arg)} if arg else None
            return _error(kind, f"Emulated {kind}", rid=rid, headers=headers)
        if kind.startswith("http_"):
            code = int(kind[5:])
            if code >= 500:
                return web.Response(
                    status=code,
                    content_type="text/html",
                    text=f"<html><body><h1>{code} Error</h1></body></html>",
                )
            return _json({"HttpStatusCode": code, "Message": f"HTTP {code}"}, code)
        if kind == "rate_limit":
            return _error(
                "TOO_MANY_REQUESTS", "Too many requests", 429, headers={"Retry-After": _num(arg)}
            )
        if kind == "html":
            return web.Response(
                text="<!DOCTYPE html><html><body>Maintenance</body></html>",
                content_type="text/html",
            )
        if kind == "wrong_shape":
            return _json(
                {
                    "HttpStatusCode": 200,
                    "Investments": "oops",
                    "Accounts": 7,
                    "StatementsByAccount": "x",
                    "RequestId": 5,
                }
            )
        if kind == "missing_fields":
            return _json({})
        if kind == "redirect":
            raise web.HTTPFound("http://attacker.invalid/steal")
        if kind == "slow":
            await asyncio.sleep(arg)
            return answer()
        if kind == "reset":
            _abort(request)
            return web.Response(status=599)  # never reaches the client
        normal = answer()
        assert isinstance(normal, web.Response) and normal.body is not None
        body = bytes(normal.body)  # type: ignore[arg-type]
        if kind == "wrong_content_type":
            normal.content_type = "text/plain"
            return normal
        if kind == "gzip":
            return web.Response(
                body=gzip.compress(body),
                status=normal.status,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        resp = web.StreamResponse(status=normal.status)
        resp.content_type = "application/json"
        resp.content_length = len(body) if kind != "trickle" else 10**9
        await resp.prepare(request)
        if kind == "truncate":
            await resp.write(body[: len(body) // 2])
            _abort(request)
            return resp
        if kind == "silence":
            await asyncio.sleep(3600)
        elif kind == "trickle":
            deadline = time.monotonic() + 3600
            for byte in itertools.cycle(body):
                if time.monotonic() > deadline:
                    break
                await resp.write(bytes([byte]))
                await asyncio.sleep(0.05)
        _abort(request)
        return resp


def _ready_body(sc: LoginScenario, family: str, login_id: str, rid: str) -> bytes:
    """The generated 200 body of ``family`` for a login and session."""
    variant = int(login_id[:2], 16) % 4
    payload = PAYLOADS[family](sc.payload_bytes, variant)
    return b'{"RequestId":"%s",%s' % (rid.encode(), payload[1:])


def busiest_window(times: Iterable[float], window: float) -> int:
    """The most of ``times`` falling within any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _pending(rid: str) -> web.Response:
    """A ``202 OPERATION_PENDING`` that counts no poll (Enrich waiting on the detail)."""
    obj = {
        "FlinksCode": "OPERATION_PENDING",
        "HttpStatusCode": 202,
        "Message": "Your operation is still processing",
        "RequestId": rid,
    }
    return _json(obj, 202)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _verbatim(given: bytes | tuple[int, bytes]) -> web.Response:
    status, body = given if isinstance(given, tuple) else (200, given)
    return web.Response(body=body, status=status, content_type="application/json")


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_ENCODE(obj), status=status, content_type="application/json", headers=headers
    )


def _authorization(login_id: str, rid: str) -> dict[str, Any]:
    """The 200 of ``/Authorize`` (the shape of the API reference's example)."""
    return {
        "HttpStatusCode": 200,
        "Links": [{"rel": "AccountsDetail", "href": "/GetAccountsDetail", "example": None}],
        "Login": {
            "Username": "Greatday",
            "IsScheduledRefresh": False,
            "LastRefresh": "2019-05-09T13:47:46.5227901",
            "Type": "Personal",
            "Id": login_id,
        },
        "Institution": "FlinksCapital",
        "InstitutionName": "FlinksCapital",
        "InstitutionId": 14,
        "RequestId": rid,
    }


def _challenge(rid: str, questions: Sequence[tuple[str, str]]) -> web.Response:
    """A ``203`` from ``/Authorize``: the institution asks ``questions``."""
    return _json(
        {
            "HttpStatusCode": 203,
            "SecurityChallenges": [
                {"Type": "QuestionAndAnswer", "Prompt": prompt} for prompt, _ in questions
            ],
            "RequestId": rid,
            "Institution": "FlinksCapital",
            "InstitutionName": "FlinksCapital",
            "InstitutionId": 14,
            "Links": [],
        },
        203,
    )


def _error(
    code: str,
    message: str,
    status: int | None = None,
    *,
    rid: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    status = status or _STATUS_OF_CODE.get(code, 400)
    obj: dict[str, Any] = {"HttpStatusCode": status, "Message": message, "FlinksCode": code}
    if rid:
        obj["RequestId"] = rid
    return _json(obj, status, headers)
