"""Polling and Authorize driven through a fake :class:`~flinks_async._transport.Sender`.

No sockets: the fake answers each :class:`Request` from a script, as httpx's mock transports
allow, and records what was sent. These test the polling rule and Authorize on their own;
the loopback tests (``test_polling``, ``test_client``...) test them with the transport.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator

import msgspec
import pytest

from flinks_async import (
    Authorization,
    DecodeError,
    FlinksClient,
    PollTimeoutError,
    SessionExpiredError,
)
from flinks_async._authorize import Authorizer
from flinks_async._budget import BodyBudget
from flinks_async._config import Settings
from flinks_async._decoding import ModelDecoder
from flinks_async._events import Event, EventHook
from flinks_async._guards import Guards
from flinks_async._polling import ENDPOINTS, Plan, run_plan
from flinks_async._transport import Reply, Request, Sender

from .conftest import API_KEY, CUSTOMER, SECRET

pytestmark = pytest.mark.anyio

LOGIN = "5e115eac-1209-4f19-641c-08d6d484e2fe"
_INVESTMENTS = b'{"Accounts":[{"Id":"a1"}],"Securities":[]}'
_PENDING = b'{"FlinksCode":"OPERATION_PENDING"}'

#: what the fake answers a call: a (status, body), or an exception to raise
Script = Callable[[Request], "tuple[int, bytes] | BaseException"]


class FakeSender:
    """Answers each call from ``script``, as the transport would: a 200 decoded by the
    call's decoder, a 202 as is, an exception raised; fresh headers taken per call."""

    def __init__(self, settings: Settings, script: Script) -> None:
        self.script = script
        self.sent: list[tuple[str, str, dict[str, object] | None, dict[str, str]]] = []
        self.events: list[Event] = []
        self.hooks: tuple[EventHook, ...] = (self.events.append,)
        self.budget = BodyBudget(settings.max_body_bytes_in_flight)
        self.guards = Guards(settings, random.Random(0))

    async def send(self, call: Request) -> Reply:
        if call.fresh_headers is not None:
            call.headers = {**call.headers, **await call.fresh_headers()}
        body = msgspec.json.decode(call.body) if call.body is not None else None
        self.sent.append((call.method, call.endpoint, body, dict(call.headers)))
        answer = self.script(call)
        if isinstance(answer, BaseException):
            raise answer
        status, text = answer
        if status == 200 and call.decode is not None:
            return Reply(status, text, call.decode(text))
        return Reply(status, text)

    def emit(self, event: Event) -> None:
        self.events.append(event)


def _settings(**options: object) -> Settings:
    base = FlinksClient(CUSTOMER, api_key=API_KEY, poll_interval=0.001, poll_jitter=0.0)
    return dataclasses.replace(base.settings, **options)  # type: ignore[arg-type]


def _plan(sender: Sender, settings: Settings, authorize: Callable[[str], object]) -> Plan:
    return Plan(
        endpoint=ENDPOINTS["accounts-detail"],
        login_id=LOGIN,
        request_id=None,
        body={"WithBalance": True},
        settings=settings,
        decode=ModelDecoder.of(ENDPOINTS["accounts-detail"].model, raw=False),
        url="https://fake.invalid/v3/x/BankingServices/GetAccountsDetail",
        headers={},
        transport=sender,
        authorize=authorize,  # type: ignore[arg-type]
    )


def _authorizer(sessions: list[str]) -> Callable[[str], object]:
    """An ``authorize`` handing out request ids rid-1, rid-2... (recorded in ``sessions``)."""

    async def authorize(login_id: str) -> Authorization:
        sessions.append(f"rid-{len(sessions) + 1}")
        return Authorization(request_id=sessions[-1], login_id=login_id)

    return authorize


_DETAIL = b'{"Accounts":[{"Id":"a1","Transactions":[]}],"Login":{"Id":"x"}}'


async def test_a_202_then_a_200_is_posted_then_polled_by_get() -> None:
    s = _settings()
    answers = iter([(202, _PENDING), (202, _PENDING), (200, _DETAIL)])
    sender = FakeSender(s, lambda call: next(answers))
    sessions: list[str] = []
    plan = _plan(sender, s, _authorizer(sessions))
    value = await run_plan(plan)
    assert [a.id for a in value.accounts] == ["a1"]
    assert sessions == ["rid-1"]
    assert [(m, e) for m, e, _, _ in sender.sent] == [
        ("POST", "GetAccountsDetail"),
        ("GET", "GetAccountsDetailAsync"),
        ("GET", "GetAccountsDetailAsync"),
    ]
    assert sender.sent[0][2] == {"WithBalance": True, "RequestId": "rid-1"}
    assert plan.polls == 2 and plan.posted
    pending = [e for e in sender.events if e.kind == "pending"]
    assert [(e.attempt, e.status, e.request_id) for e in pending] == [
        (1, 202, "rid-1"),
        (2, 202, "rid-1"),
    ]


async def test_a_session_error_re_authorizes_once_then_posts_again() -> None:
    s = _settings()
    expired = SessionExpiredError("gone", flinks_code="SESSION_EXPIRED", http_status=401)
    answers: Iterator[tuple[int, bytes] | BaseException]
    answers = iter([(202, _PENDING), expired, (202, _PENDING), (200, _DETAIL)])
    sender = FakeSender(s, lambda call: next(answers))
    sessions: list[str] = []
    value = await run_plan(_plan(sender, s, _authorizer(sessions)))
    assert value.accounts
    assert sessions == ["rid-1", "rid-2"]
    assert [(m, body and body.get("RequestId")) for m, _, body, _ in sender.sent] == [
        ("POST", "rid-1"),
        ("GET", None),  # the poll carries its RequestId in the path
        ("POST", "rid-2"),  # a new session starts with the request again
        ("GET", None),
    ]


async def test_a_second_session_error_is_raised() -> None:
    s = _settings()
    sender = FakeSender(
        s, lambda call: SessionExpiredError("gone", flinks_code="SESSION_NONEXISTENT")
    )
    sessions: list[str] = []
    with pytest.raises(SessionExpiredError):
        await run_plan(_plan(sender, s, _authorizer(sessions)))
    assert sessions == ["rid-1", "rid-2"] and len(sender.sent) == 2


async def test_poll_timeout_ends_a_call_that_stays_pending() -> None:
    s = _settings(poll_timeout=0.05)
    sender = FakeSender(s, lambda call: (202, _PENDING))
    sessions: list[str] = []
    with pytest.raises(PollTimeoutError) as info:
        await run_plan(_plan(sender, s, _authorizer(sessions)))
    err = info.value
    assert err.request_id == "rid-1" and err.endpoint == "GetAccountsDetail"
    assert err.login_id == LOGIN and err.attempts >= 1 and err.elapsed >= 0.05
    assert len(sender.sent) == err.attempts  # every 202 counted, no request after the end


_AUTH = b'{"RequestId":"9b5c6f0e-1111-2222-3333-444455556666","Login":{"Id":"x"}}'


async def test_authorize_sends_the_login_and_returns_its_session() -> None:
    s = _settings()
    sender = FakeSender(s, lambda call: (200, _AUTH))
    auth = await Authorizer(sender, s).authorize(LOGIN)
    assert auth.request_id == "9b5c6f0e-1111-2222-3333-444455556666"
    assert auth.login_id == LOGIN
    assert sender.sent == [
        ("POST", "Authorize", {"LoginId": LOGIN, "MostRecentCached": True}, {}),
    ]


async def test_authorize_with_a_secret_key_mints_a_token_per_request() -> None:
    s = _settings(secret_key=SECRET)
    tokens = iter(["tok-1", "tok-2"])

    def script(call: Request) -> tuple[int, bytes]:
        if call.endpoint == "GenerateAuthorizeToken":
            return 200, b'{"Token":"%s"}' % next(tokens).encode()
        return 200, _AUTH

    sender = FakeSender(s, script)
    authorizer = Authorizer(sender, s)
    await authorizer.authorize(LOGIN)
    await authorizer.authorize(LOGIN)
    sent = [(e, h.get("flinks-auth-key")) for _, e, _, h in sender.sent]
    assert sent == [
        ("GenerateAuthorizeToken", SECRET),
        ("Authorize", "tok-1"),
        ("GenerateAuthorizeToken", SECRET),
        ("Authorize", "tok-2"),
    ]


async def test_authorize_without_a_request_id_is_a_decode_error() -> None:
    s = _settings()
    sender = FakeSender(s, lambda call: (200, b'{"Login":{"Id":"x"}}'))
    with pytest.raises(DecodeError, match="without a RequestId") as info:
        await Authorizer(sender, s).authorize(LOGIN)
    assert info.value.endpoint == "Authorize" and info.value.login_id == LOGIN
