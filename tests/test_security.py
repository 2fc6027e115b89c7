"""TLS verification, proxies, the environment, and what the emulator exposes."""

from __future__ import annotations

import ssl
import traceback
from collections.abc import AsyncIterator

import aiohttp
import pytest
import trustme
from aiohttp import web

from flinks_async import FlinksClient, TransportError
from flinks_async.testing import Emulator

from .conftest import API_KEY, CUSTOMER, fast_client

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_emu(ca: trustme.CA) -> AsyncIterator[Emulator]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    async with Emulator(ssl_context=server_ctx, api_key=API_KEY) as emu:
        yield emu


async def test_self_signed_server_is_refused_by_default(tls_emu: Emulator, login: str) -> None:
    assert tls_emu.url.startswith("https://")
    async with FlinksClient(CUSTOMER, base_url=tls_emu.url, api_key=API_KEY) as client:
        with pytest.raises(TransportError, match="TLS") as info:
            await client.investments(login)
        assert client.requests_sent == 1  # a certificate failure is not retried
    text = "".join(traceback.format_exception(info.value))
    assert API_KEY not in text
    assert tls_emu.requests_total == 0  # nothing, credentials included, was sent


async def test_a_custom_ca_is_trusted_through_an_ssl_context(
    tls_emu: Emulator, ca: trustme.CA, login: str
) -> None:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with FlinksClient(
        CUSTOMER, base_url=tls_emu.url, api_key=API_KEY, ssl=ctx, poll_interval=0.001
    ) as client:
        assert (await client.investments(login)).accounts


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """A minimal forwarding HTTP proxy that records what went through it."""
    seen: list[str] = []

    async def forward(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.url.path}")
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                request.method,
                str(request.url),
                data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            ) as upstream,
        ):
            return web.Response(
                body=await upstream.read(),
                status=upstream.status,
                content_type=upstream.content_type,
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_requests_go_through_a_configured_proxy(
    emu: Emulator, proxy: tuple[str, list[str]], login: str
) -> None:
    url, seen = proxy
    async with fast_client(emu, proxy=url) as client:
        assert (await client.investments(login)).accounts
    assert any(s.endswith("/Authorize") for s in seen)
    assert sum(s.endswith("/Investments") for s in seen) == 3


async def test_the_environment_is_ignored_unless_trusted(
    emu: Emulator, login: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a dead proxy
    monkeypatch.setenv("NO_PROXY", "")
    async with fast_client(emu) as client:
        assert (await client.investments(login)).accounts  # went direct
    async with fast_client(emu, trust_env=True, max_retries=0) as client:
        with pytest.raises(TransportError):
            await client.investments(login)  # now through the dead proxy


async def test_emulator_binds_loopback_by_default() -> None:
    async with Emulator() as emu:
        assert emu._runner is not None
        bound = [addr[0] for addr in emu._runner.addresses]  # the listening sockets
        assert bound == ["127.0.0.1"]
        assert emu.url == f"http://127.0.0.1:{emu._runner.addresses[0][1]}"


async def test_no_cookies_are_kept_between_requests(emu: Emulator, login: str) -> None:
    async with fast_client(emu) as client:
        await client.investments(login)
        assert len(client._transport.session().cookie_jar) == 0
    # the emulator set a cookie on every answer; none came back
    assert len(emu.requests) >= 3
    assert all("Cookie" not in r.headers for r in emu.requests)
