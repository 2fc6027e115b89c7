"""Enrich (#33) through HTTP against the emulator: the chain Authorize -> GetAccountsDetail
-> attributes as one awaited call, its session rules, single-flight, the package breaker,
the typed errors."""

from __future__ import annotations

import functools
import pathlib
import subprocess
from typing import Any

import anyio
import msgspec
import pytest

from flinks_async import (
    NONE_DETECTED,
    AttributeRequestError,
    Attributes,
    Categorization,
    ConfigurationError,
    FlinksClient,
    InvalidRequestError,
    PackageNotSubscribedError,
    SessionExpiredError,
    TransientAPIError,
)
from flinks_async.testing import Emulator, EnrichGate, demo_login_ids

from .conftest import API_KEY, CUSTOMER, SECRET, fast_client, needs_redis

pytestmark = pytest.mark.anyio


def _emulator(**options: object) -> Emulator:
    return Emulator(api_key=API_KEY, secret_key=SECRET, customer_id=CUSTOMER, **options)  # type: ignore[arg-type]


def _sent(emu: Emulator, login: str) -> list[tuple[str, str, int]]:
    return [
        (r.method, r.endpoint, r.status)
        for r in emu.requests
        if r.login_id is not None and r.login_id.lower() == login.lower()
    ]


async def _drain(pull: Any) -> None:
    async with pull as results:
        async for _ in results:
            pass


async def test_income_attributes_is_one_awaited_chain(client: FlinksClient, emu: Emulator) -> None:
    login = demo_login_ids(1, seed=3301)[0]
    answer = await client.income_attributes(login)
    assert isinstance(answer, Attributes) and answer.card is not None
    card = answer.card
    assert any(n.startswith("average_monthly_") and n.endswith("_90_days") for n in card.attributes)
    assert any(n.endswith("_previous_month") for n in card.attributes)
    assert all(v is None or isinstance(v, str) or v.is_finite() for v in card.attributes.values())
    assert [(m, e, s) for m, e, s in _sent(emu, login)] == [
        ("POST", "Authorize", 200),
        ("POST", "GetAccountsDetail", 202),
        ("GET", "GetAccountsDetailAsync", 202),
        ("GET", "GetAccountsDetailAsync", 200),
        ("GET", "GetIncomeAttributes", 202),  # polled by sending the same GET again
        ("GET", "GetIncomeAttributes", 202),
        ("GET", "GetIncomeAttributes", 200),
    ]
    data = [r for r in emu.requests if r.endpoint.startswith("Get") and r.login_id == login]
    assert len({r.request_id for r in data}) == 1  # one session from Authorize to the card
    enrich = [r for r in data if r.endpoint == "GetIncomeAttributes"]
    assert all(
        r.path.startswith(f"/v3/{CUSTOMER}/insight/login/{login}/attributes/") for r in enrich
    )
    assert all(r.headers.get("Content-Length", "0") == "0" for r in enrich)  # GET: no body
    assert all(r.headers.get("x-api-key") == API_KEY for r in enrich)
    assert client.schema_drift == {}


async def test_every_package_and_categorization(client: FlinksClient) -> None:
    login = demo_login_ids(1, seed=3302)[0]
    everything = await client.all_attributes(login)
    assert everything.card is not None and len(everything.card.attributes) >= 300
    assert NONE_DETECTED in everything.card.attributes.values()
    assert any(
        v is not None and not isinstance(v, str) and v < 0
        for v in everything.card.attributes.values()
    )
    biz = await client.all_business_attributes(login)
    assert biz.card is not None and all("_biz" in n for n in biz.card.attributes)
    assert any(n.endswith("_trend_simple") for n in biz.card.attributes)
    cats = await client.categorization(login)
    assert isinstance(cats, Categorization) and cats.transactions
    assert cats.transactions[0].category == "Income" and cats.transactions[0].credit is not None
    assert all(t.sub_category for t in cats.transactions)
    assert client.schema_drift == {}


async def test_the_same_seed_gives_the_same_cards(client: FlinksClient) -> None:
    login = demo_login_ids(1, seed=3303)[0]
    first = await client.raw.credit_risk_attributes(login)
    again = await client.raw.credit_risk_attributes(login)
    assert first.split(b'"Card"')[1] == again.split(b'"Card"')[1]


async def test_detail_and_attributes_from_one_session(client: FlinksClient, emu: Emulator) -> None:
    """The documented way: the detail's ``request_id`` reused, no second Authorize, no
    second detail."""
    login = demo_login_ids(1, seed=3304)[0]
    detail = await client.accounts_detail(login)
    assert detail.request_id is not None
    income = await client.income_attributes(login, request_id=detail.request_id)
    lending = await client.lending_attributes(login, request_id=detail.request_id)
    assert income.card is not None and lending.card is not None
    assert emu.authorizations[login.lower()] == 1
    assert [e for _, e, _ in _sent(emu, login)].count("GetAccountsDetail") == 1


async def test_a_session_error_restarts_the_chain_once(emu: Emulator) -> None:
    login = demo_login_ids(1, seed=3305)[0]
    # the detail's three requests pass, the first attributes request finds the session gone
    emu.set_login(login, faults=["slow:0@data"] * 3 + ["SESSION_EXPIRED"])
    async with fast_client(emu) as client:
        answer = await client.user_analysis_attributes(login)
    assert answer.card is not None
    assert emu.authorizations[login.lower()] == 2
    sessions = [r.request_id for r in emu.requests if r.endpoint == "GetAccountsDetail"]
    assert len(set(sessions)) == 2  # the chain ran again from Authorize, detail included


async def test_past_the_session_window_the_second_expiry_is_raised() -> None:
    async with _emulator(enrich=EnrichGate(None, session_window=0.0)) as emu:
        login = demo_login_ids(1, seed=3306)[0]
        async with fast_client(emu) as client:
            with pytest.raises(SessionExpiredError) as caught:
                await client.income_attributes(login)
        assert caught.value.flinks_code == "SESSION_EXPIRED"
        assert emu.authorizations[login.lower()] == 2  # restarted once, not more


async def test_single_flight_per_login_and_package(client: FlinksClient, emu: Emulator) -> None:
    login = demo_login_ids(1, seed=3307)[0]
    results: list[Attributes] = []

    async def one(package: str) -> None:
        results.append(await client.fetch(package, login))

    async with anyio.create_task_group() as tg:
        for package in ("income-attributes", "income-attributes", "credit-risk-attributes"):
            tg.start_soon(one, package)
    assert len(results) == 3 and all(r.card is not None for r in results)
    assert emu.authorizations[login.lower()] == 2  # one chain per package, not per caller
    income = [s for _, e, s in _sent(emu, login) if e == "GetIncomeAttributes"]
    assert income.count(200) == 1


async def test_a_package_outside_the_subscription_stops_that_endpoint() -> None:
    gate = EnrichGate({"GetIncomeAttributes", "GetCategorization"}, session_window=480.0)
    async with _emulator(enrich=gate) as emu:
        logins = demo_login_ids(20, seed=3308)
        async with fast_client(emu) as client:
            pull = client.credit_risk_attributes_many(logins, concurrency=4)
            with pytest.raises(PackageNotSubscribedError) as caught:
                await _drain(pull)
            assert caught.value.http_status == 403
            assert caught.value.flinks_code == "METHOD_NOT_AVAILABLE"
            asked = emu.counts["GetCreditRiskAttributes"]
            assert 1 <= asked <= 4  # the ones already in flight, no retry, no storm
            with pytest.raises(PackageNotSubscribedError, match="nothing sent"):
                await client.credit_risk_attributes(logins[0])
            assert emu.counts["GetCreditRiskAttributes"] == asked
            assert (await client.income_attributes(logins[0])).card is not None  # others go on


async def test_retry_later_is_retried_with_backoff(emu: Emulator) -> None:
    login = demo_login_ids(1, seed=3309)[0]
    failed = b'{"HttpStatusCode":400,"FlinksCode":"RETRY_LATER","Message":"Computation failed"}'
    emu.set_login(login, pending=0, payloads={"GetLendingAttributes": (400, failed)})
    async with fast_client(emu, max_retries=2) as client:
        with pytest.raises(TransientAPIError) as caught:
            await client.lending_attributes(login)
    assert caught.value.flinks_code == "RETRY_LATER"
    assert emu.counts["GetLendingAttributes"] == 3  # the first and two retries


async def test_another_enrich_call_of_the_login_answers_202_until_it_is_done(
    emu: Emulator,
) -> None:
    login = demo_login_ids(1, seed=3310)[0]
    async with fast_client(emu) as client:
        detail = await client.accounts_detail(login)
        rid = detail.request_id
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(client.income_attributes, login, request_id=rid))
            tg.start_soon(functools.partial(client.lending_attributes, login, request_id=rid))
    pending = [r for r in emu.requests if r.endpoint.endswith("Attributes") and r.status == 202]
    assert len(pending) > 4  # each computes twice (202), and one waited on the other


async def test_pull_endpoint_income_attributes_writes_and_resumes(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    """``flinks-async pull --endpoint income-attributes``: one JSONL line per login, each
    its Attributes answer; ``--resume`` pulls nothing again."""
    from .test_cli import _pull

    ids = demo_login_ids(3, seed=3311)
    proc = await _pull(emu, tmp_path, "--endpoint", "income-attributes", ids=ids)
    assert proc.returncode == 0, proc.stderr
    lines = [msgspec.json.decode(x) for x in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert len(lines) == 3 and all("Card" in str(line) for line in lines)
    asked = emu.counts["GetIncomeAttributes"]
    again = await _pull(emu, tmp_path, "--endpoint", "income-attributes", "--resume", ids=ids)
    assert again.returncode == 0 and emu.counts["GetIncomeAttributes"] == asked


async def test_custom_attributes_returns_the_names_asked(
    client: FlinksClient, emu: Emulator
) -> None:
    login = demo_login_ids(1, seed=3312)[0]
    names = ["count_nsf_30_days", "sum_employer_income_90_days", "revenue_biz_trend_simple"]
    answer = await client.custom_attributes(
        login,
        names,
        filters=["Operations"],
        attributes_detail=["sum_employer_income_90_days"],
        limit_days=90,
    )
    assert answer.card is not None and list(answer.card.attributes) == names
    [detail] = answer.details
    assert detail.attribute == "sum_employer_income_90_days" and detail.transactions
    posted = [r for r in emu.requests if r.endpoint == "Attributes"]
    assert {r.method for r in posted} == {"POST"} and posted[-1].status == 200


@pytest.mark.parametrize(
    ("options", "case", "refused"),
    [
        ({"attributes": ["no_such_attribute"]}, "unknown_attribute", "no_such_attribute"),
        ({"attributes": []}, "empty_list", None),
        ({"filters": ["Savings"]}, "filter", "Savings"),
        ({"account_filter": ["not-an-account"]}, "account_id", "not-an-account"),
        ({"account_filter": []}, "account_filter", None),
        ({"attributes_detail": ["count_nsf_90_days"]}, "attributes_detail", "count_nsf_90_days"),
        ({"limit_days": 400}, "limit_days", "400"),
    ],
)
async def test_invalid_request_is_typed_per_case(
    client: FlinksClient, emu: Emulator, options: dict[str, Any], case: str, refused: str | None
) -> None:
    login = demo_login_ids(1, seed=3313)[0]
    options = {"attributes": ["count_nsf_30_days"], **options}
    with pytest.raises(AttributeRequestError) as caught:
        await client.custom_attributes(login, **options)
    error = caught.value
    assert (error.case, error.refused, error.flinks_code) == (case, refused, "INVALID_REQUEST")
    assert isinstance(error, InvalidRequestError) and error.endpoint == "Attributes"
    assert emu.counts["Attributes"] == 1  # not retried


async def test_an_account_of_the_login_is_accepted(client: FlinksClient) -> None:
    login = demo_login_ids(1, seed=3314)[0]
    detail = await client.accounts_detail(login)
    ids = [a.id for a in detail.accounts or [] if a.id]
    answer = await client.custom_attributes(
        login, ["count_nsf_30_days"], account_filter=ids[:1], request_id=detail.request_id
    )
    assert answer.card is not None


async def test_categories_and_the_attribute_library(client: FlinksClient) -> None:
    groups = await client.categories("CA")
    assert groups and groups[0].primary_category_name and groups[0].sub_categories
    consumer = await client.attribute_library()
    business = await client.attribute_library(business=True)
    consumer_names = {a.name for c in consumer for a in c.attributes or []}
    business_names = {a.name for c in business for a in c.attributes or []}
    assert "count_nsf_30_days" in consumer_names
    assert business_names and all(n and "_biz" in n for n in business_names)
    with pytest.raises(ConfigurationError, match="CA or US"):
        await client.categories("FR")


async def test_with_webhooks_the_detail_waits_for_its_webhook_then_attributes_are_polled() -> None:
    from .test_webhooks import HOOK_SECRET, Served, _client, _free_port

    port = _free_port()
    async with _emulator(
        ready_after=0.3,
        webhook_url=f"http://127.0.0.1:{port}/flinks/webhook",
        webhook_secret=HOOK_SECRET,
    ) as emu:
        login = demo_login_ids(1, seed=3315)[0]
        async with _client(emu) as client:  # webhook_poll_interval=600: only a webhook ends it
            served = Served(client.webhook_receiver(HOOK_SECRET).aiohttp_handler, port)
            await served.start()
            try:
                answer = await client.income_attributes(login)
            finally:
                await served.stop()
        assert answer.card is not None
        assert emu.counts["GetAccountsDetail"] == 1 and emu.counts["GetAccountsDetailAsync"] == 0
        assert {w.response_type for w in emu.webhooks_sent} == {"GetAccountsDetail"}
        assert emu.counts["GetIncomeAttributes"] >= 2  # never pushed: polled to its 200


@needs_redis
async def test_the_queue_pulls_an_enrich_endpoint(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """``enqueue --endpoint credit-risk-attributes``, a ``--burst`` worker, ``status`` and
    ``collect``: each login's chain, one line each."""
    from .test_distributed import CLI, _collect, _enqueue_cmd, _env

    redis_url, _ = redis_server
    ids = demo_login_ids(6, seed=3316)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    async with Emulator(pending=1) as emu:
        env = _env(emu)
        cmd = _enqueue_cmd(redis_url, ids_file, "--endpoint", "credit-risk-attributes")
        done = await anyio.run_process(cmd, env=env, check=False)
        assert done.returncode == 0, done.stderr.decode()
        burst = await anyio.run_process(
            [*CLI, "worker", "--redis", redis_url, "--burst"], env=env, check=False
        )
        assert burst.returncode == 0, burst.stderr.decode()
        status = await anyio.run_process(
            [*CLI, "status", "--redis", redis_url, "--job", "nightly"], env=env, check=False
        )
        assert status.returncode == 0, status.stderr.decode()
        code, report = await _collect(redis_url, tmp_path / "out.jsonl")
    lines = [msgspec.json.decode(x) for x in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert code == 0 and "6 logins written" in report, report
    assert {line["login_id"] for line in lines} == set(ids) and all(x["ok"] for x in lines)
    assert emu.counts["GetCreditRiskAttributes"] == 12  # a 202, then the 200, per login


async def test_a_callers_expired_session_restarts_the_whole_chain(
    client: FlinksClient, emu: Emulator
) -> None:
    login = demo_login_ids(1, seed=3317)[0]
    detail = await client.accounts_detail(login)
    emu.set_login(login, faults=["SESSION_EXPIRED"])  # the attributes call finds it gone
    answer = await client.income_attributes(login, request_id=detail.request_id)
    assert answer.card is not None
    assert emu.authorizations[login.lower()] == 2
    details = [r for r in emu.requests if r.endpoint == "GetAccountsDetail"]
    assert len({r.request_id for r in details}) == 2  # the new session's detail was asked
