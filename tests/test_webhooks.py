"""Webhooks in one process: the receiver (signatures, idempotency, limits, aiohttp and ASGI),
the hybrid call (a 202'd call returns on its webhook, polls only as a safety net), and the
emulator's webhook faults. Counted at the emulator: the requests Flinks would see.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest
from aiohttp import web

from flinks_async import (
    DecodeError,
    FlinksClient,
    Investments,
    MemoryWebhooks,
    WebhookDelivery,
    WebhookReceiver,
    sign_webhook,
)
from flinks_async._coordination import StoredWebhook
from flinks_async.testing import Emulator, demo_login_ids, investments_payload

from .conftest import API_KEY, CUSTOMER, SECRET, assert_polling_stopped, wait_until

pytestmark = pytest.mark.anyio

HOOK_SECRET = "whsec-test-5e0c1f"
OLD_SECRET = "whsec-old-77aa01"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """An aiohttp.web app on a loopback port (stoppable and restartable)."""

    def __init__(
        self,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        port: int | None = None,
    ) -> None:
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}/flinks/webhook"
        self.handler = handler
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=128 * 1024 * 1024)
        app.router.add_route("*", "/flinks/webhook", self.handler)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def hub() -> AsyncIterator[MemoryWebhooks]:
    h = MemoryWebhooks(stream=True)
    yield h
    await h.aclose()


@pytest.fixture
async def served(hub: MemoryWebhooks) -> AsyncIterator[tuple[Served, WebhookReceiver]]:
    receiver = WebhookReceiver(hub, [HOOK_SECRET, OLD_SECRET])
    s = Served(receiver.aiohttp_handler)
    await s.start()
    yield s, receiver
    await s.stop()


def _body(rid: str = "b5a3c1d2-0000-4000-8000-000000000001", kind: str = "Investments") -> bytes:
    payload = investments_payload(5_000)
    return b'{"ResponseType":"%s","RequestId":"%s",%s' % (kind.encode(), rid.encode(), payload[1:])


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST as Flinks does: a redirect is an answer, not followed."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers=headers, allow_redirects=False) as r,
    ):
        await r.read()
        return r.status


def _stored(hub: MemoryWebhooks) -> list[WebhookDelivery]:
    queue = hub._stream()
    return [queue.get_nowait() for _ in range(queue.qsize())]


# --- signatures ----------------------------------------------------------------------


def test_the_signature_is_base64_of_hmac_sha256_over_the_raw_body() -> None:
    body = b'{"ResponseType":"KYC", "Holders": []}'
    expected = base64.b64encode(hmac.new(b"k", body, hashlib.sha256).digest()).decode()
    assert sign_webhook(body, "k") == expected
    from flinks_async._webhooks import signature_ok

    assert signature_ok(body, expected, ["other", "k"])  # rotation: any secret
    assert signature_ok(body, f" {expected}\n", ["k"])
    assert not signature_ok(body, expected, ["other"])
    assert not signature_ok(body + b" ", expected, ["k"])  # raw bytes, never re-serialized
    assert not signature_ok(body, None, ["k"])
    assert not signature_ok(body, "", ["k"])


async def test_bad_and_missing_signatures_get_401_and_nothing_is_stored(
    hub: MemoryWebhooks,
    served: tuple[Served, WebhookReceiver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    s, receiver = served
    body = _body()
    caplog.set_level(logging.DEBUG)
    assert await _post(s.url, body, {}) == 401
    wrong = sign_webhook(body, "not-the-secret")
    assert await _post(s.url, body, {"flinks-authenticity-key": wrong}) == 401
    tampered = sign_webhook(body, HOOK_SECRET)
    assert await _post(s.url, body + b" ", {"flinks-authenticity-key": tampered}) == 401
    assert _stored(hub) == []
    assert await hub.wait("b5a3c1d2-0000-4000-8000-000000000001", 0.01) is None
    assert receiver.counts["bad_signature"] == 3
    shown = caplog.text + repr(receiver) + str(receiver)
    for secret in (HOOK_SECRET, OLD_SECRET, wrong, tampered):
        assert secret not in shown
    assert "b5a3c1d2" not in shown  # nothing of the body either


async def test_both_header_names_and_both_secrets_of_a_rotation_are_accepted(
    hub: MemoryWebhooks, served: tuple[Served, WebhookReceiver]
) -> None:
    s, _ = served
    one, two = _body("rid-1"), _body("rid-2")
    assert (
        await _post(s.url, one, {"flinks-authenticity-key": sign_webhook(one, OLD_SECRET)}) == 200
    )
    assert await _post(s.url, two, {"X-Flinks-Signature": sign_webhook(two, HOOK_SECRET)}) == 200
    assert [d.request_id for d in _stored(hub)] == ["rid-1", "rid-2"]


async def test_a_custom_header_name_is_the_only_one_read(hub: MemoryWebhooks) -> None:
    receiver = WebhookReceiver(hub, HOOK_SECRET, header_names=["X-Custom-Sig"])
    body = _body()
    signed = sign_webhook(body, HOOK_SECRET)
    assert (await receiver.receive({"flinks-authenticity-key": signed}, body))[0] == 401
    assert (await receiver.receive({"x-custom-sig": signed}, body))[0] == 200


async def test_repeats_of_one_delivery_reach_the_application_once(
    hub: MemoryWebhooks, served: tuple[Served, WebhookReceiver]
) -> None:
    s, receiver = served
    body = _body()
    headers = {"flinks-authenticity-key": sign_webhook(body, HOOK_SECRET)}
    assert [await _post(s.url, body, headers) for _ in range(3)] == [200, 200, 200]
    stored = _stored(hub)
    assert len(stored) == 1 and receiver.counts == {"stored": 1, "repeated": 2}
    assert stored[0].id == hashlib.sha256(body).hexdigest()
    assert await hub.wait(stored[0].request_id or "", 0.01) == body  # the call's copy
    assert await hub.wait(stored[0].request_id or "", 0.01) is None  # taken once


async def test_an_unknown_response_type_is_kept_raw_and_reported(
    hub: MemoryWebhooks,
    served: tuple[Served, WebhookReceiver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    s, _ = served
    body = b'{"ResponseType":"GetSomethingNew","RequestId":"r-9","Odd":[1,2.50]}'
    with caplog.at_level(logging.WARNING, "flinks_async.webhooks"):
        status = await _post(
            s.url, body, {"flinks-authenticity-key": sign_webhook(body, HOOK_SECRET)}
        )
    assert status == 200
    (delivery,) = _stored(hub)
    assert delivery.body == body and not delivery.known
    assert delivery.value() == {
        "ResponseType": "GetSomethingNew",
        "RequestId": "r-9",
        "Odd": [1, 2.5],
    }
    assert "unknown ResponseType 'GetSomethingNew' kept raw" in caplog.text


async def test_a_data_webhook_decodes_into_the_models_with_the_money_rules(
    hub: MemoryWebhooks,
) -> None:
    delivery = WebhookDelivery.from_body(_body())
    value = delivery.value()
    assert isinstance(value, Investments) and value.accounts
    assert value.response_type == "Investments"  # a known key, not schema drift
    nan = b'{"ResponseType":"Investments","RequestId":"r","Cash":"NaN","Accounts":[]}'
    with pytest.raises(DecodeError, match="NaN"):
        WebhookDelivery.from_body(nan).value()


async def test_bodies_too_big_or_not_json_are_refused_with_their_status(
    hub: MemoryWebhooks,
) -> None:
    receiver = WebhookReceiver(hub, HOOK_SECRET, max_body_bytes=4000)
    s = Served(receiver.aiohttp_handler)
    await s.start()
    try:
        big = _body()
        assert len(big) > 4000
        assert (
            await _post(s.url, big, {"flinks-authenticity-key": sign_webhook(big, HOOK_SECRET)})
            == 413
        )
        for junk in (b"<html>oops</html>", b"[1, 2]", b"{" * 3000):
            signed = sign_webhook(junk, HOOK_SECRET)
            assert await _post(s.url, junk, {"flinks-authenticity-key": signed}) == 400
        async with aiohttp.ClientSession() as http, http.get(s.url) as r:
            assert r.status == 405
    finally:
        await s.stop()
    assert _stored(hub) == []


async def test_a_hub_that_cannot_store_answers_503_so_flinks_delivers_again() -> None:
    class Broken(MemoryWebhooks):
        async def store(self, delivery: StoredWebhook) -> bool:
            raise ConnectionError("down")

    receiver = WebhookReceiver(Broken(), HOOK_SECRET)
    body = _body()
    status, _ = await receiver.receive(
        {"flinks-authenticity-key": sign_webhook(body, HOOK_SECRET)}, body
    )
    assert status == 503


@pytest.mark.parametrize("app", ["aiohttp", "asgi"])
async def test_bodies_being_received_never_take_from_the_clients_body_budget(app: str) -> None:
    """Strangers can POST to a webhook URL: a body being received is bounded by the
    receiver's own ``WebhookLimits``, never by the client's ``max_body_bytes_in_flight``.
    With every byte of that budget held by the client's calls, a delivery is still read,
    verified and stored."""
    async with FlinksClient(CUSTOMER, base_url="http://127.0.0.1:9", webhooks=True) as client:
        receiver = client.webhook_receiver(HOOK_SECRET)
        budget = client._transport.budget
        body = _body()
        headers = {"flinks-authenticity-key": sign_webhook(body, HOOK_SECRET)}
        await budget.take(budget.limit)  # the client's calls hold every byte of it
        if app == "aiohttp":
            s = Served(receiver.aiohttp_handler)
            await s.start()
            try:
                status = await _post(s.url, body, headers)
            finally:
                await s.stop()
        else:
            sent: list[MutableMapping[str, Any]] = []
            parts = [body[: len(body) // 2], body[len(body) // 2 :]]

            async def receive() -> MutableMapping[str, Any]:
                chunk = parts.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

            async def send(message: MutableMapping[str, Any]) -> None:
                sent.append(message)

            scope: MutableMapping[str, Any] = {
                "type": "http",
                "method": "POST",
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()]
                + [(b"content-length", str(len(body)).encode())],
            }
            await receiver(scope, receive, send)
            status = int(sent[0]["status"])
        assert status == 200 and receiver.counts["stored"] == 1
        assert budget.used == budget.limit  # untouched by the webhook
        assert receiver.receiving == receiver.receiving_bytes == 0  # given back once stored
        budget.give(budget.limit)


def test_a_receiver_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookReceiver(MemoryWebhooks(), [])
    with pytest.raises(ValueError, match="secret"):
        WebhookReceiver(MemoryWebhooks(), "")


async def test_a_webhook_that_came_before_the_wait_is_seen_until_retention_ends() -> None:
    hub = MemoryWebhooks(retention=0.2)
    body = _body("early")
    assert await hub.store(WebhookDelivery.from_body(body))
    assert await hub.wait("early", 5.0) == body  # at once: no wait
    assert await hub.store(WebhookDelivery.from_body(_body("late")))
    await anyio.sleep(0.3)  # the subject: retention ends
    assert await hub.wait("late", 0.01) is None


# --- the hybrid call -----------------------------------------------------------------


def _client(emu: Emulator, **options: object) -> FlinksClient:
    defaults: dict[str, object] = dict(
        base_url=emu.url,
        api_key=API_KEY,
        secret_key=SECRET,
        webhooks=True,
        webhook_poll_interval=600.0,  # far beyond the test: only a webhook ends the calls
        poll_interval=0.02,
        poll_timeout=60.0,
        backoff_initial=0.002,
        backoff_max=0.01,
    )
    defaults.update(options)
    return FlinksClient(CUSTOMER, **defaults)  # type: ignore[arg-type]


async def _pull(client: FlinksClient, ids: list[str]) -> list[object]:
    async with client.many("investments", ids, concurrency=len(ids)) as results:
        return [r async for r in results]


async def test_calls_end_on_their_webhooks_with_a_third_of_the_requests() -> None:
    """What the issue measures: requests per login at the emulator, webhooks against
    polling only, for logins pending "60 s" polled every "10 s": six 202s then the 200
    when polled (counted, so the machine's speed does not matter), 0.6 s with webhooks."""
    ids = demo_login_ids(1000, seed=3)
    port = _free_port()
    per_login = {}
    for mode in ("polling", "webhooks"):
        async with Emulator(
            api_key=API_KEY,
            secret_key=SECRET,
            customer_id=CUSTOMER,
            pending=6,
            ready_after=None if mode == "polling" else 0.6,
            webhook_url=f"http://127.0.0.1:{port}/flinks/webhook",
            webhook_secret=HOOK_SECRET,
        ) as emu:
            client = _client(emu, webhooks=False) if mode == "polling" else _client(emu)
            async with client:
                served = None
                if client.webhooks is not None:
                    served = Served(client.webhook_receiver(HOOK_SECRET).aiohttp_handler, port)
                    await served.start()
                try:
                    results = await _pull(client, ids)
                finally:
                    if served is not None:
                        await served.stop()
            assert all(r.ok for r in results), (mode, [r.error for r in results][:3])  # type: ignore[attr-defined]
            assert {r.login_id for r in results} == set(ids)  # type: ignore[attr-defined]
            assert emu.authorizations == {i.lower(): 1 for i in ids}
            per_login[mode] = emu.requests_total / len(ids)
            if mode == "webhooks":
                # a token, Authorize and the first data request: nothing polled at all
                assert emu.counts == {
                    "GenerateAuthorizeToken": len(ids),
                    "Authorize": len(ids),
                    "Investments": len(ids),
                }
                assert {w.request_id for w in emu.webhooks_sent if w.status == 200} == {
                    r.request_id for r in emu.requests if r.endpoint == "Investments"
                }
    assert per_login["webhooks"] == 3
    assert per_login["webhooks"] <= per_login["polling"] / 3, per_login


async def test_without_its_webhook_a_call_gets_its_data_from_the_safety_poll() -> None:
    async with Emulator(api_key=API_KEY, secret_key=SECRET, ready_after=0.3) as emu:
        async with _client(emu, webhook_poll_interval=0.1) as client:  # no receiver at all
            login = demo_login_ids(1, seed=5)[0]
            value = await client.investments(login)
    assert isinstance(value, Investments) and value.accounts
    polls = emu.counts["Investments"]
    assert 2 <= polls <= 20  # every ~0.1 s: the safety net, not poll_interval's 0.02 s


async def test_past_webhook_grace_the_flinks_rule_resumes() -> None:
    async with Emulator(api_key=API_KEY, secret_key=SECRET, ready_after=0.4) as emu:
        # grace 0: the Flinks rule (every poll_interval) from the first 202
        async with _client(emu, webhook_grace=0.0, poll_interval=0.02) as client:
            await client.investments(demo_login_ids(1, seed=6)[0])
    assert emu.counts["Investments"] > 5  # polled on poll_interval, not 600 s


async def test_a_cancelled_call_stops_waiting_and_leaks_nothing() -> None:
    async with Emulator(api_key=API_KEY, secret_key=SECRET, ready_after=60.0) as emu:
        async with _client(emu) as client:
            login = demo_login_ids(1, seed=8)[0]
            with anyio.move_on_after(0.3):
                await client.investments(login)
            hub = client.webhooks
            assert isinstance(hub, MemoryWebhooks)
            assert hub._waiters == {}
            assert client.active_polls == 0 and client.in_flight_requests == 0
            await assert_polling_stopped(emu)


async def test_poll_timeout_holds_while_waiting_for_a_webhook() -> None:
    from flinks_async import PollTimeoutError

    async with Emulator(api_key=API_KEY, secret_key=SECRET, ready_after=60.0) as emu:
        async with _client(emu, poll_timeout=0.3) as client:
            with pytest.raises(PollTimeoutError):
                await client.investments(demo_login_ids(1, seed=9)[0])


async def test_webhook_faults_cost_time_never_data() -> None:
    """The first delivery lost, signed wrong, sent twice, out of order, and the receiver
    down for a while: every call still gets its data, each delivery is stored once."""
    ids = demo_login_ids(30, seed=11)
    port = _free_port()
    async with Emulator(
        api_key=API_KEY,
        secret_key=SECRET,
        ready_after=0.2,
        webhook_url=f"http://127.0.0.1:{port}/flinks/webhook",
        webhook_secret=HOOK_SECRET,
        webhook_retry_delay=0.2,
        webhook_attempts=100,  # Flinks: 10; here the receiver's downtime is not bounded
        webhook_faults={
            "drop_first": 0.3,
            "bad_signature": 0.3,
            "duplicate": 0.5,
            "shuffle:0.3": 1.0,
        },
        seed=4,
    ) as emu:
        async with _client(emu) as client:
            receiver = client.webhook_receiver(HOOK_SECRET)
            served = Served(receiver.aiohttp_handler, port)
            pull = asyncio.ensure_future(_pull(client, ids))
            await wait_until(lambda: len(emu.webhooks_sent) >= 5, timeout=30)
            await served.start()  # the receiver was down for the first deliveries
            try:
                results = await pull
            finally:
                await served.stop()
    assert all(r.ok for r in results)  # type: ignore[attr-defined]
    statuses = {w.status for w in emu.webhooks_sent}
    assert 0 in statuses and 401 in statuses and 200 in statuses  # each fault happened
    assert receiver.counts["stored"] == len(ids)
    assert receiver.counts["repeated"] >= 1  # duplicates arrived, and were dropped
    assert emu.counts["Investments"] == len(ids)  # no call needed its safety poll


# --- the receiver as an ASGI app ------------------------------------------------------


async def test_the_receiver_is_an_asgi_app_under_uvicorn(hub: MemoryWebhooks) -> None:
    import uvicorn
    from fastapi import FastAPI
    from starlette.routing import Route

    app = FastAPI()
    app.router.routes.append(
        Route("/flinks/webhook", WebhookReceiver(hub, HOOK_SECRET), methods=["POST"])
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.ensure_future(server.serve())
    try:
        await wait_until(lambda: server.started, timeout=30)
        url = f"http://127.0.0.1:{port}/flinks/webhook"
        body = _body("asgi-1")
        headers = {"X-Flinks-Signature": sign_webhook(body, HOOK_SECRET)}
        assert await _post(url, body, headers) == 200
        assert await _post(url, body, headers) == 200
        assert await _post(url, body, {}) == 401
        assert await _post(url, b"{}" + b" " * 100, {"X-Flinks-Signature": "x"}) == 401
    finally:
        server.should_exit = True
        await task
    assert [d.request_id for d in _stored(hub)] == ["asgi-1"]
    assert msgspec.json.decode(body)["ResponseType"] == "Investments"


async def test_callers_of_one_login_share_one_session_and_one_webhook() -> None:
    port = _free_port()
    async with Emulator(
        api_key=API_KEY,
        secret_key=SECRET,
        ready_after=0.3,
        webhook_url=f"http://127.0.0.1:{port}/flinks/webhook",
        webhook_secret=HOOK_SECRET,
    ) as emu:
        async with _client(emu) as client:
            served = Served(client.webhook_receiver(HOOK_SECRET).aiohttp_handler, port)
            await served.start()
            try:
                login = demo_login_ids(1, seed=12)[0]
                values = await asyncio.gather(*(client.investments(login) for _ in range(5)))
            finally:
                await served.stop()
    assert all(v is values[0] for v in values)  # one run, shared
    assert emu.counts["Authorize"] == 1 and emu.counts["Investments"] == 1


async def test_a_holder_sent_as_a_plain_string_is_accepted_by_call_and_stream() -> None:
    """A public fixture sends ``Holder`` as a string in a webhook body: the call returns the
    answer (the string kept on ``.extra``, drift reported), and so does ``value()``."""
    from flinks_async import AccountsDetail
    from flinks_async.testing import accounts_payload

    answer = msgspec.json.decode(accounts_payload(4_000))
    answer["Accounts"][0]["Holder"] = "Jane Doe"
    port = _free_port()
    login = demo_login_ids(1, seed=13)[0]
    async with Emulator(
        api_key=API_KEY,
        secret_key=SECRET,
        ready_after=0.2,
        webhook_url=f"http://127.0.0.1:{port}/flinks/webhook",
        webhook_secret=HOOK_SECRET,
    ) as emu:
        emu.set_login(login, payloads={"GetAccountsDetail": msgspec.json.encode(answer)})
        async with _client(emu, webhook_stream=True) as client:
            served = Served(client.webhook_receiver(HOOK_SECRET).aiohttp_handler, port)
            await served.start()
            try:
                detail = await client.accounts_detail(login)
            finally:
                await served.stop()
            hub = client.webhooks
            assert isinstance(hub, MemoryWebhooks)
            (delivery,) = _stored(hub)
    assert emu.counts["GetAccountsDetail"] == 1  # ended by the webhook
    for value in (detail, delivery.value()):
        assert isinstance(value, AccountsDetail) and value.accounts
        assert value.accounts[0].holder is None
        assert value.accounts[0].extra == {"Holder": "Jane Doe"}
    assert client.schema_drift == {"Account": {"'Holder' (str)": 1}}
