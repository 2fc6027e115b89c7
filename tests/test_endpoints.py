"""The endpoint table (``flinks_async._endpoints``): every row is wired everywhere, so
that adding an endpoint is a row, a model and an emulator payload."""

from __future__ import annotations

import argparse
import re
import warnings
from typing import Any

import msgspec
import pytest

from flinks_async import ConfigurationError, FlinksClient, WebhookDelivery
from flinks_async._cli import _parser
from flinks_async._endpoints import ENDPOINTS, DataCalls, Endpoint, FanOut, Route, banking
from flinks_async._webhooks import DATA_TYPES
from flinks_async.testing import Emulator, demo_login_ids
from flinks_async.testing._emulator import PAYLOADS

pytestmark = pytest.mark.anyio


def _endpoint_choices(command: str) -> set[str]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[
        command
    ]
    action = next(a for a in sub._actions if a.dest == "endpoint")
    return set(action.choices or ())


def _path_regex(route: Route) -> re.Pattern[str]:
    under = r"/v3/[^/]+/BankingServices/" if route.root == "banking" else r"/v3/[^/]+/"
    return re.compile(under + route.pattern().pattern)


async def test_every_row_is_a_client_method_a_cli_choice_a_webhook_type_and_a_payload(
    client: FlinksClient,
) -> None:
    assert {"investments", "accounts-detail", "accounts-summary", "statements"} <= set(ENDPOINTS)
    for name, row in ENDPOINTS.items():
        assert row.cli_name == name
        assert vars(DataCalls)[row.method_name] is row  # the client's call ...
        fan_out = vars(DataCalls)[f"{row.method_name}_many"]  # ... and its fan-out
        assert isinstance(fan_out, FanOut) and fan_out.endpoint is row
        assert callable(getattr(client, row.method_name))
        assert callable(getattr(client.raw, f"{row.method_name}_many"))
        if row.response_type is not None:  # a webhook of its type decodes (Enrich: never pushed)
            assert DATA_TYPES[row.response_type] is row.model
        assert row.flinks_name in PAYLOADS  # the emulator answers it
    for command in ("pull", "enqueue"):  # the command line (and the queue) take it
        assert _endpoint_choices(command) == set(ENDPOINTS)


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
async def test_every_row_is_routed_by_the_emulator_and_called_by_the_client(
    emu: Emulator, client: FlinksClient, name: str
) -> None:
    """Through real HTTP: the first request takes the row's route, the 202s are polled
    the row's way, the 200 decodes into its model (or the bytes, with ``client.raw``)."""
    row = ENDPOINTS[name]
    typed_login, raw_login = demo_login_ids(2, seed=360 + len(name))
    value = await getattr(client, row.method_name)(typed_login)
    assert isinstance(value, row.model)
    body = await getattr(client.raw, row.method_name)(raw_login)
    assert isinstance(body, bytes) and isinstance(msgspec.json.decode(body), dict)
    poll = row.poll or row.route  # RESEND: the same request again
    for login in (typed_login, raw_login):
        data = [r for r in emu.requests if r.login_id == login and r.endpoint != "Authorize"]
        if row.after:  # a chain: its first step ran first, in the same session
            first = [r for r in data if r.endpoint.startswith(row.after[0].flinks_name)]
            assert [r.status for r in first] == [202, 202, 200]
            assert {r.request_id for r in data} == {first[0].request_id}
            data = data[len(first) :]
        sent = [(r.method, r.path, r.status) for r in data]
        assert data[0].method == row.route.method and _path_regex(row.route).match(data[0].path)
        assert data[0].status == 202, sent  # pending twice, then polled until the 200
        assert all(r.method == poll.method and _path_regex(poll).match(r.path) for r in data[1:])
        assert [r.status for r in data[1:]] == [202, 200], sent


async def test_a_webhook_of_every_row_decodes_into_its_model() -> None:
    for row in ENDPOINTS.values():
        if row.response_type is None:
            continue  # never pushed (Enrich): always polled
        payload = PAYLOADS[row.flinks_name](2_000, 1)
        body = b'{"ResponseType":"%s","RequestId":"r",%s' % (
            row.response_type.encode(),
            payload[1:],
        )
        delivery = WebhookDelivery.from_body(body)
        assert delivery.known and delivery.wakes == "r"
        assert isinstance(delivery.value(), row.model)


async def test_fetch_and_many_take_either_name(client: FlinksClient) -> None:
    login = demo_login_ids(1, seed=363)[0]
    by_flinks_name = await client.fetch("GetAccountsSummary", login)
    by_cli_name = await client.fetch("accounts-summary", login)
    assert type(by_flinks_name).__name__ == "AccountsSummary"
    assert type(by_cli_name) is type(by_flinks_name)
    assert by_flinks_name.accounts == by_cli_name.accounts
    async with client.many("GetStatements", [login], raw=True) as results:
        got = [r async for r in results]
    assert [type(r.value) for r in got] == [bytes]
    with pytest.raises(ConfigurationError, match="unknown endpoint 'GetNothing'"):
        await client.fetch("GetNothing", login)


async def test_raw_keyword_still_works_with_a_deprecation_warning(client: FlinksClient) -> None:
    login = demo_login_ids(1, seed=364)[0]
    with pytest.warns(DeprecationWarning, match=r"use client\.raw\.investments\(\.\.\.\)"):
        body = await client.investments(login, raw=True)
    again = await client.raw.investments(login)
    assert isinstance(body, bytes) and isinstance(again, bytes)
    first, second = msgspec.json.decode(body), msgspec.json.decode(again)
    assert first.pop("RequestId") != second.pop("RequestId")  # two sessions ...
    assert first == second  # ... the same answer
    with pytest.warns(DeprecationWarning, match=r"client\.raw\.statements_many"):
        pull = client.statements_many([login], raw=True)
    async with pull as results:
        assert [type(r.value) async for r in results] == [bytes]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning without raw=
        await client.investments(login)
        assert isinstance(await client.fetch("investments", login, raw=True), bytes)


def test_a_route_template_takes_path_parameters() -> None:
    """Enrich's routes carry the login and the session in their path."""
    route = Route("GET", "Attributes/{loginId}/Summary/{requestId}")
    assert route.params == ("loginId", "requestId")
    assert route.head == "Attributes"
    assert route.url("https://x/v3/c/BankingServices", login_id="L", request_id="R") == (
        "https://x/v3/c/BankingServices/Attributes/L/Summary/R"
    )
    match = route.pattern().match("Attributes/L/Summary/R")
    assert match is not None and match.groupdict() == {"loginId": "L", "requestId": "R"}
    with pytest.raises(ValueError, match="unknown path parameters"):
        Route("GET", "Attributes/{customerId}")


def test_a_row_whose_typeddicts_and_wire_names_disagree_is_refused() -> None:
    from flinks_async import _options as opt
    from flinks_async._models import AccountsSummary

    def row(wire: dict[str, str]) -> Endpoint[Any, ..., ...]:
        typed = (AccountsSummary, opt.AccountsSummaryCall, opt.AccountsSummaryMany)
        return banking("GetAccountsSummary", "accounts-summary", *typed, wire)

    with pytest.raises(TypeError, match="does not hold exactly"):
        row({"with_balance": "WithBalance"})
    ok = row({"with_balance": "WithBalance", "with_account_identity": "WithAccountIdentity"})
    assert ok.options == ("with_balance", "with_account_identity")
    assert ENDPOINTS["accounts-detail"].choices == {
        "days_of_transactions": ("Days90", "Days365")
    }  # from the DaysOfTransactions Literal


async def test_a_bad_argument_raises_where_the_call_is_awaited(client: FlinksClient) -> None:
    """As when each method was an ``async def``: building the call sends and raises
    nothing (``asyncio.gather(...)`` of calls gets the error from the one that failed)."""
    from flinks_async import InvalidLoginIdError

    for call in (client.investments("not-a-guid"), client.raw.statements("not-a-guid")):
        with pytest.raises(InvalidLoginIdError):
            await call
    login = demo_login_ids(1, seed=365)[0]
    pending = client.accounts_detail(login, days_of_transactions="Days30")  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="days_of_transactions"):
        await pending
    assert client.requests_sent == 0
