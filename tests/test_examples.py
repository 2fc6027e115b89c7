"""The example web apps, started for real and called over HTTP."""

from __future__ import annotations

import asyncio
import json
import pathlib
import runpy
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import aiohttp
import anyio
import pytest
import uvicorn
from aiohttp import web

from examples import aiohttp_app, fastapi_app
from flinks_async import FlinksClient
from flinks_async.testing import Emulator

from .conftest import API_KEY, CUSTOMER, SECRET, assert_polling_stopped, fast_client, wait_until

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve_fastapi(app: object) -> AsyncGenerator[str, None]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")  # type: ignore[arg-type]
    )
    task = asyncio.get_running_loop().create_task(server.serve())
    await wait_until(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _serve_aiohttp(app: web.Application) -> AsyncGenerator[str, None]:
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


Factory = Callable[[], FlinksClient]


@pytest.fixture(params=["fastapi", "aiohttp"])
async def app(
    request: pytest.FixtureRequest, emu: Emulator
) -> AsyncIterator[tuple[str, list[FlinksClient]]]:
    clients: list[FlinksClient] = []

    def factory() -> FlinksClient:
        clients.append(fast_client(emu, poll_interval=0.01))
        return clients[-1]

    if request.param == "fastapi":
        serve = _serve_fastapi(fastapi_app.create_app(factory))
    else:
        serve = _serve_aiohttp(aiohttp_app.create_app(factory))
    url = await serve.__anext__()
    yield url, clients
    await serve.aclose()
    assert clients and all(c.closed for c in clients)  # the app's shutdown closed its client


async def test_handler_returns_the_investments(
    app: tuple[str, list[FlinksClient]], emu: Emulator, login: str
) -> None:
    url, _ = app
    emu.set_login(login, pending=2)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/investments/{login}") as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["Accounts"] and body["Securities"]
        async with http.get(f"{url}/investments/not-a-guid") as resp:
            assert resp.status == 422


async def test_client_hanging_up_cancels_the_poll(
    app: tuple[str, list[FlinksClient]], emu: Emulator, login: str
) -> None:
    url, clients = app
    emu.set_login(login, faults=["never_ready"])
    async with aiohttp.ClientSession() as http:
        with anyio.move_on_after(0.3):
            await http.get(f"{url}/investments/{login}")
        assert emu.counts["Investments"] >= 3  # it was polling
    flinks = clients[0]
    await wait_until(lambda: flinks.active_polls == 0)
    assert flinks.in_flight_requests == 0
    await assert_polling_stopped(emu)


def web_app_env(monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> None:
    """The environment a docs web app reads its client's settings from: ``emu``'s."""
    for name, value in (
        ("FLINKS_CUSTOMER_ID", CUSTOMER),
        ("FLINKS_BASE_URL", emu.url),
        ("FLINKS_API_KEY", API_KEY),
        ("FLINKS_SECRET_KEY", SECRET),
    ):
        monkeypatch.setenv(name, value)


async def test_the_readme_web_app_serves_accounts(
    emu: Emulator, login: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLINKS_CUSTOMER_ID", CUSTOMER)
    monkeypatch.setenv("FLINKS_BASE_URL", emu.url)
    monkeypatch.setenv("FLINKS_API_KEY", API_KEY)
    monkeypatch.setenv("FLINKS_SECRET_KEY", SECRET)
    module = runpy.run_path(str(ROOT / "docs" / "examples" / "web_app.py"))
    serve = _serve_fastapi(module["app"])
    url = await serve.__anext__()
    try:
        emu.set_login(login, pending=1)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/accounts/{login}") as resp:
                assert resp.status == 200
                assert (await resp.json())["accounts"]
            emu.set_login(login, faults=["INVALID_LOGIN@data"])
            async with http.get(f"{url}/accounts/{login}") as resp:
                assert resp.status == 409 and await resp.json() == {"error": "INVALID_LOGIN"}
        client = module["app"].state.flinks
    finally:
        await serve.aclose()
    assert client.closed  # the lifespan closed it at shutdown


async def test_the_readme_web_app_answers_a_login_id_that_is_not_a_guid_with_422(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It answered 500 with a traceback (InvalidLoginIdError was not caught): a client's
    mistake is a 4xx that says what is wrong, and nothing reaches Flinks."""
    web_app_env(monkeypatch, emu)
    module = runpy.run_path(str(ROOT / "docs" / "examples" / "web_app.py"))
    serve = _serve_fastapi(module["app"])
    url = await serve.__anext__()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/accounts/12345") as resp:
                status, text = resp.status, await resp.text()
    finally:
        await serve.aclose()
    assert status == 422, text
    assert json.loads(text) == {
        "error": "a Flinks loginId is a GUID like 5e115eac-1209-4f19-641c-08d6d484e2fe, "
        "got a str of 5 characters [login 12345]"
    }
    assert emu.requests_total == 0


@pytest.mark.parametrize("kind", ["fastapi", "aiohttp"])
async def test_the_webhook_examples_end_calls_on_their_webhooks(
    kind: str, login: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/examples/webhooks_*.py served for real: Flinks' webhook reaches the app's
    receiver and ends the handler's call; the emulator sees no poll."""
    async with Emulator(
        api_key=API_KEY, secret_key=SECRET, customer_id=CUSTOMER, ready_after=0.3
    ) as emu:
        monkeypatch.setenv("FLINKS_CUSTOMER_ID", CUSTOMER)
        monkeypatch.setenv("FLINKS_BASE_URL", emu.url)
        monkeypatch.setenv("FLINKS_API_KEY", API_KEY)
        monkeypatch.setenv("FLINKS_SECRET_KEY", SECRET)
        monkeypatch.setenv("FLINKS_WEBHOOK_SECRET", "old-one,whsec-example")
        module = runpy.run_path(str(ROOT / "docs" / "examples" / f"webhooks_{kind}.py"))
        if kind == "fastapi":
            serve = _serve_fastapi(module["app"])
        else:
            serve = _serve_aiohttp(module["create_app"]())
        url = await serve.__anext__()
        emu.webhook_url, emu.webhook_secret = f"{url}/flinks/webhook", "whsec-example"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/investments/{login}") as resp:
                    assert resp.status == 200, await resp.text()
                    body = await resp.json()
            assert body["accounts"] >= 1
        finally:
            await serve.aclose()
    assert emu.counts["Investments"] == 1  # one request: the webhook brought the data
    assert [w.status for w in emu.webhooks_sent] == [200]
