"""Account management (#35) over loopback HTTP: against the emulator, and against a real
aiohttp server answering the documented samples of ``tests/data/management/`` (written
from Flinks' reference as ``../shared/flinks/README.md`` quotes it)."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any, assert_type

import msgspec
import pytest
from aiohttp import web

from flinks_async import (
    APIError,
    CardDeleted,
    ConfigurationError,
    Event,
    FinancialInstitution,
    FlinksClient,
    InstitutionsPage,
    LoginError,
    MFAError,
    NightlyRefreshStatus,
    SchemaDriftError,
    StoredQuestions,
)
from flinks_async._management import OPERATIONS
from flinks_async.testing import Emulator, demo_login_ids
from flinks_async.testing._accounts import ANSWERS, INELIGIBLE_STATES

from .conftest import CUSTOMER, fast_client

pytestmark = pytest.mark.anyio
DATA = pathlib.Path(__file__).parent / "data" / "management"
NIGHTLY_KEY = "nightly-private-key-7f3a"
LOGIN = "5e115eac-1209-4f19-641c-08d6d484e2fe"


# --- against the documented samples ---------------------------------------------------


class Documented:
    """A real aiohttp server answering each account-management route with its documented
    sample (or what a test puts in ``answers``), recording each request it receives."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, bytes]]] = {}
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"]
        name = next(
            n
            for n, op in OPERATIONS.items()
            if op.method == request.method and _matches(op.path, tail)
        )
        self.received.append((name, request.path_qs, dict(request.headers), await request.read()))
        queued = self.answers.get(name)
        status, body = queued.pop(0) if queued else (200, (DATA / f"{name}.json").read_bytes())
        return web.Response(body=body, status=status, content_type="application/json")


def _matches(template: str, tail: str) -> bool:
    fixed, parts = template.split("/"), tail.split("/")
    return len(fixed) == len(parts) and all(
        f == p or f.startswith("{") for f, p in zip(fixed, parts, strict=True)
    )


@pytest.fixture
async def documented() -> AsyncIterator[Documented]:
    server = Documented()
    app = web.Application()
    app.router.add_route("*", "/v3/{customer}/BankingServices/{tail:.+}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


def _client(url: str, **options: Any) -> FlinksClient:
    defaults: dict[str, Any] = dict(
        base_url=url, nightly_refresh_key=NIGHTLY_KEY, backoff_initial=0.001, backoff_max=0.01
    )
    return FlinksClient(CUSTOMER, **{**defaults, **options})


async def test_the_documented_answers_decode_typed_with_no_drift(documented: Documented) -> None:
    """strict_schema=True: any key of a documented sample the models do not map would
    raise; each answer comes back typed."""
    async with _client(documented.url, strict_schema=True) as client:
        said = await client.set_scheduled_refresh(LOGIN, True)
        status = await client.nightly_refresh_status()
        questions = await client.mfa_questions(LOGIN)
        saved = await client.answer_mfa_questions(LOGIN, {"What city were you born in?": "X"})
        listed = [i async for i in client.institutions()]
        by_number = await client.institution_by_routing_number("121100782")
        deleted = await client.delete_card(LOGIN)
        assert client.schema_drift == {}
    assert said == f"LoginId {LOGIN} has now been activated for automatic refresh"
    first, second = status.ineligible_cards or []
    assert (first.login_id, first.last_refresh_state, first.last_refresh_error_code) == (
        LOGIN,
        "AnsweringSecurityChallenge",
        None,
    )
    assert second.last_refresh_error_code == "INVALID_LOGIN"
    assert first.last_refresh_at is not None and first.last_refresh_at.tzinfo is None
    assert first.last_refresh_at.day == 28
    assert set(status.by_login_id()) == {LOGIN, second.login_id}
    assert [q.question for q in questions.questions or []] == [
        "What city were you born in?",
        "What is the best country on earth?",
    ]
    assert saved == "Answers updated"
    assert [i.id for i in listed] == [1, 2]
    assert listed[0].name("fr") == "FlinksCapital (fr)" and listed[1].name("fr") == (
        "Bank of the West"  # no French name: the first one
    )
    urls = listed[0].localizations[0].urls  # type: ignore[index]
    assert urls is not None and urls[0].url == "https://example.com/logo.png"
    assert by_number.routing_numbers == ["121100782"] and by_number.country == "US"
    assert deleted == CardDeleted(
        status_code=200, message=f"All of the information about LoginId {LOGIN} has been removed"
    )


async def test_what_each_request_sends(documented: Documented) -> None:
    """Methods, paths, query and bodies as documented; the Bearer key only to
    GetNightlyRefreshStatus."""
    async with _client(documented.url, api_key="api-key-1") as client:
        await client.set_scheduled_refresh(LOGIN, False)
        await client.nightly_refresh_status()
        await client.mfa_questions(LOGIN)
        await client.answer_mfa_questions(LOGIN, {"Q?": "A"})
        await client.institutions_page(skip=20, take=10)
        await client.institution_by_routing_number(" 121100782 ")
        await client.delete_card(LOGIN)
    base = f"/v3/{CUSTOMER}/BankingServices"
    seen = [(name, path.removeprefix(base), body) for name, path, _, body in documented.received]
    assert seen == [
        ("SetScheduledRefresh", "/SetScheduledRefresh", b'{"LoginId":"%s","IsActivated":false}'
         % LOGIN.encode()),
        ("GetNightlyRefreshStatus", "/GetNightlyRefreshStatus", b""),
        ("GetMFAQuestions", f"/GetMFAQuestions/{LOGIN}", b""),
        ("AnswerMFAQuestions", "/AnswerMFAQuestions",
         b'{"LoginId":"%s","Questions":[{"Question":"Q?","Answer":"A"}]}' % LOGIN.encode()),
        ("Institutions", "/Institutions?skip=20&take=10", b""),
        ("InstitutionByRoutingNumber", "/Institutions/RoutingNumber/121100782", b""),
        ("DeleteCard", f"/DeleteCard/{LOGIN}", b""),
    ]  # fmt: skip
    bearer = {name: h.get("Authorization") for name, _, h, _ in documented.received}
    assert bearer.pop("GetNightlyRefreshStatus") == f"Bearer {NIGHTLY_KEY}"
    assert set(bearer.values()) == {None}


@pytest.mark.parametrize(
    ("name", "answer", "call", "error", "says"),
    [
        (
            "DeleteCard",
            b'{"HttpStatusCode": 200, "Message": "Deleted"}',  # the emulator's old shape
            lambda c: c.delete_card(LOGIN),
            SchemaDriftError,
            "StatusCode",
        ),
        (
            "DeleteCard",
            b'{"StatusCode": 404, "Message": "No such login"}',
            lambda c: c.delete_card(LOGIN),
            APIError,
            "StatusCode is 404",
        ),
        (
            "SetScheduledRefresh",
            b'{"Message": "done"}',
            lambda c: c.set_scheduled_refresh(LOGIN, True),
            Exception,
            "not the documented bare JSON string",
        ),
        (
            "GetNightlyRefreshStatus",
            b'{"HttpStatusCode": 200}',
            lambda c: c.nightly_refresh_status(),
            SchemaDriftError,
            "IneligibleCards",
        ),
    ],
    ids=["DeleteCard HttpStatusCode", "DeleteCard StatusCode 404", "object", "no list"],
)
async def test_an_answer_off_the_documented_shape_is_an_error_sent_once(
    documented: Documented,
    name: str,
    answer: bytes,
    call: Callable[[FlinksClient], Any],
    error: type[Exception],
    says: str,
) -> None:
    documented.answers[name] = [(200, answer)]
    async with _client(documented.url) as client:
        with pytest.raises(error, match=says):
            await call(client)
    assert len(documented.received) == 1  # a complete 200: never sent again


async def test_management_calls_go_through_the_transport(documented: Documented) -> None:
    """Retried on a 503, with the events of any request (endpoint = the Flinks name)."""
    documented.answers["GetMFAQuestions"] = [(503, b"<html>busy</html>")]
    events: list[Event] = []
    async with _client(documented.url, event_hooks=[events.append]) as client:
        questions = await client.mfa_questions(LOGIN)
    assert questions.questions and len(documented.received) == 2
    assert [(e.kind, e.endpoint, e.status) for e in events if e.kind == "response"] == [
        ("response", "GetMFAQuestions", 503),
        ("response", "GetMFAQuestions", 200),
    ]
    assert {e.login_id for e in events} == {LOGIN}


# --- against the emulator ---------------------------------------------------------------


async def test_set_scheduled_refresh_changes_what_authorize_reports(emu: Emulator) -> None:
    login = demo_login_ids(1, seed=350)[0]
    emu.accounts.set_login(login, scheduled=False)
    async with fast_client(emu) as client:
        assert (await client.authorize(login)).login.is_scheduled_refresh is False  # type: ignore[union-attr]
        said = await client.set_scheduled_refresh(login, True)
        assert said == f"LoginId {login} has now been activated for automatic refresh"
        assert (await client.authorize(login)).login.is_scheduled_refresh is True  # type: ignore[union-attr]
        assert "deactivated" in await client.set_scheduled_refresh(login, False)
        assert (await client.authorize(login)).login.is_scheduled_refresh is False  # type: ignore[union-attr]
        with pytest.raises(ConfigurationError):
            await client.set_scheduled_refresh(login, "yes")  # type: ignore[arg-type]


async def test_the_nightly_status_lists_ineligible_logins_with_refresh_on() -> None:
    logins = demo_login_ids(400, seed=351)
    async with Emulator(seed=9, ineligible_rate=0.3, scheduled_refresh_rate=0.8) as emu:
        emu.accounts.enroll(logins)
        async with _client(emu.url) as client:
            status = await client.nightly_refresh_status()
            listed = status.by_login_id()
            on = [i for i in logins if emu.accounts.login(i).scheduled]
            assert set(listed) <= {i.lower() for i in on}
            assert 0.2 < len(listed) / len(on) < 0.4  # the share asked for, by seed
            pairs = {(c.last_refresh_state, c.last_refresh_error_code) for c in listed.values()}
            assert pairs <= set(INELIGIBLE_STATES) and len(pairs) >= 4
            assert all(c.last_refresh_at is not None for c in listed.values())
            one = next(iter(listed))
            await client.set_scheduled_refresh(one, False)  # refresh off: no longer listed
            assert one not in (await client.nightly_refresh_status()).by_login_id()
    async with Emulator(seed=9, ineligible_rate=0.3, scheduled_refresh_rate=0.8) as again:
        again.accounts.enroll(logins)
        async with _client(again.url) as client:  # the same seed, the same logins
            assert set((await client.nightly_refresh_status()).by_login_id()) == set(listed)


async def test_the_nightly_key_is_its_own_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    login = demo_login_ids(1, seed=352)[0]
    caplog.set_level(logging.DEBUG, logger="flinks_async")
    async with Emulator(nightly_refresh_key=NIGHTLY_KEY, ineligible_rate=1.0) as emu:
        async with _client(emu.url, nightly_refresh_key=None) as client:
            with pytest.raises(ConfigurationError, match="FLINKS_NIGHTLY_REFRESH_KEY"):
                await client.nightly_refresh_status()
            assert emu.requests_total == 0  # refused before any request
        async with _client(emu.url, nightly_refresh_key="wrong-key-0") as client:
            for _ in range(4):  # a wrong key never trips the set-up breaker...
                with pytest.raises(APIError) as info:
                    await client.nightly_refresh_status()
            assert info.value.http_status == 401
            assert (await client.authorize(login)).request_id  # ...the client goes on
            shown = [repr(client), str(client.settings), str(info.value), repr(info.value)]
        async with _client(emu.url, log_bodies=True) as client:
            emu.accounts.enroll([login])
            assert (await client.nightly_refresh_status()).ineligible_cards
            shown += [repr(client), repr(client.settings), client.settings.describe()]
    assert "nightly_refresh_key='***'" in client.settings.describe()
    text = "\n".join([*shown, *(r.getMessage() for r in caplog.records)])
    assert NIGHTLY_KEY not in text and "wrong-key-0" not in text


async def test_stored_questions_and_their_answers(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    login = demo_login_ids(1, seed=353)[0]
    emu.accounts.set_login(login, questions=["Q one?", "Q two?"])
    caplog.set_level(logging.DEBUG, logger="flinks_async")
    async with fast_client(emu, log_bodies=True) as client:
        asked = await client.mfa_questions(login)
        assert [q.question for q in asked.questions or []] == ["Q one?", "Q two?"]
        assert await client.answer_mfa_questions(login, {"Q one?": "secret-answer-1"}) == (
            "Answers updated"
        )
        assert [q.question for q in (await client.mfa_questions(login)).questions or []] == [
            "Q two?"
        ]
        with pytest.raises(MFAError) as info:
            await client.answer_mfa_questions(login, {"Not asked?": "secret-answer-2"})
        assert info.value.flinks_code == "QUESTION_NOT_FOUND"
        with pytest.raises(ConfigurationError):
            await client.answer_mfa_questions(login, {})
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "secret-answer" not in logged and "secret-answer" not in str(info.value)


async def test_iterating_institutions_fetches_page_after_page() -> None:
    async with Emulator(seed=4, institutions=2500) as emu:
        async with _client(emu.url) as client:
            every = [i async for i in client.institutions()]
            assert emu.counts["Institutions"] == 3  # 1000 + 1000 + 500
            assert [i.id for i in every] == list(range(1, 2501))
            small = [i async for i in client.institutions(page_size=700)]
            assert emu.counts["Institutions"] == 3 + 4 and small == every
            canadian = next(i for i in every if i.country == "CA")
            assert {loc.language for loc in canadian.localizations or []} == {"en", "fr"}
            us = next(i for i in every if i.routing_numbers)
            found = await client.institution_by_routing_number(us.routing_numbers[0])  # type: ignore[index]
            assert found == us and isinstance(found, FinancialInstitution)
            with pytest.raises(APIError) as info:
                await client.institution_by_routing_number("999999999")
            assert info.value.http_status == 404
            before = emu.requests_total
            for bad in (lambda: client.institutions_page(take=1001),
                        lambda: client.institutions_page(skip=-1),
                        lambda: client.institution_by_routing_number("12/../3")):  # fmt: skip
                with pytest.raises(ConfigurationError):
                    await bad()
            assert emu.requests_total == before
    async with Emulator(seed=4, institutions=2500) as same, _client(same.url) as client:
        assert [i async for i in client.institutions()] == every  # deterministic by seed


async def test_an_empty_directory_is_one_request() -> None:
    async with Emulator(institutions=0) as emu, _client(emu.url) as client:
        assert [i async for i in client.institutions()] == []
        assert emu.counts["Institutions"] == 1


async def test_delete_card_is_checked_and_a_second_delete_is_an_error(emu: Emulator) -> None:
    login = demo_login_ids(1, seed=354)[0]
    async with fast_client(emu) as client:
        done = await client.delete_card(login)
        assert done.status_code == 200 and login in (done.message or "")
        with pytest.raises(LoginError) as info:  # [U]: as Authorize answers a deleted login
            await client.delete_card(login)
        assert info.value.flinks_code == "INVALID_LOGIN"
    sent = [r for r in emu.requests if r.endpoint == "DeleteCard"]
    assert len(sent) == 2 and all(r.headers.get("x-api-key") for r in sent)


def test_the_operations_table_names_each_endpoint_once() -> None:
    assert sorted(OPERATIONS) == [
        "AnswerMFAQuestions",
        "DeleteCard",
        "GetMFAQuestions",
        "GetNightlyRefreshStatus",
        "InstitutionByRoutingNumber",
        "Institutions",
        "SetScheduledRefresh",
    ]
    assert [n for n, op in OPERATIONS.items() if op.bearer] == ["GetNightlyRefreshStatus"]
    assert "AuthorizeMultiple" not in OPERATIONS  # out on purpose (docs/nightly.md)
    assert set(ANSWERS) == set(OPERATIONS) - {"DeleteCard"}  # the emulator answers each row
    for name in OPERATIONS:
        if OPERATIONS[name].model is not str:
            msgspec.json.decode((DATA / f"{name}.json").read_bytes(), type=OPERATIONS[name].model)


async def test_what_type_checkers_see(emu: Emulator) -> None:
    """Each account-management call's result type (``assert_type``, checked by mypy)."""
    login = demo_login_ids(1, seed=355)[0]
    emu.accounts.set_login(login, questions=["Q?"])
    async with fast_client(emu, nightly_refresh_key=NIGHTLY_KEY) as client:
        assert_type(await client.set_scheduled_refresh(login, True), str)
        assert_type(await client.nightly_refresh_status(), NightlyRefreshStatus)
        assert_type(await client.mfa_questions(login), StoredQuestions)
        assert_type(await client.answer_mfa_questions(login, {"Q?": "A"}), str)
        page = await client.institutions_page(0, 50)
        assert_type(page, InstitutionsPage)
        number = next(n for i in page.data or [] for n in i.routing_numbers or [])
        async for inst in client.institutions(page_size=1000):
            assert_type(inst, FinancialInstitution)
            break
        assert_type(await client.institution_by_routing_number(number), FinancialInstitution)
        assert_type(await client.delete_card(login), CardDeleted)
