"""The webhook receiver on the open internet (flinks_async/_receiver.py): what strangers
can make it hold before a signature is checked is bounded apart from the client's own
calls, slow senders are cut off at their deadline, and the documented mounts answer at
exactly the registered path. Seen from outside: raw sockets of an attacker, the app's
own data calls, the emulator's record of its deliveries.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
import uvicorn
from aiohttp import web
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Route

from flinks_async import FlinksClient, MemoryWebhooks, WebhookLimits, WebhookReceiver, sign_webhook
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import API_KEY, CUSTOMER, SECRET, free_port, wait_until
from .test_webhooks import HOOK_SECRET, _body, _post, _stored
from .test_webhooks import _client as _hook_client

pytestmark = pytest.mark.anyio

PATH = "/flinks/webhook"
#: a signature header that passes the cheap check (Base64 of 32 bytes) but is forged
FORGED = base64.b64encode(os.urandom(32)).decode()
BIG = 60 * 1024 * 1024  # the attack's declared length: a full-size body


class Trickle:
    """An attacker's connection: the headers of a POST, then ``sent`` body bytes, then
    nothing; ``closed`` once the server has closed it (what it answered in ``answer``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.answer = b""

    @classmethod
    async def open(
        cls, port: int, *, length: int = BIG, sent: bytes = b"{", signature: str = FORGED
    ) -> Trickle:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\nflinks-authenticity-key: {signature}\r\n\r\n".encode()
            + sent
        )
        await writer.drain()
        return cls(reader, writer)

    async def until_closed(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        with contextlib.suppress(OSError):  # a reset after the answer is a close too
            while chunk := await self.reader.read(65536):
                self.answer += chunk
        return self.answer

    @property
    def status(self) -> int:
        return int(self.answer.split(b" ", 2)[1]) if self.answer else 0

    def still_open(self) -> bool:
        return not self.reader.at_eof() and not self.answer

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def forged_post(port: int, size: int = BIG) -> int:
    """A full-size POST with a forged signature, sent as fast as the server reads it: the
    status answered (0 if none came)."""
    t = await Trickle.open(port, length=size, sent=b"")
    answer = asyncio.ensure_future(t.until_closed())
    chunk = b" " * (1024 * 1024)
    with contextlib.suppress(OSError):
        for _ in range(size // len(chunk)):
            if answer.done():
                break
            t.writer.write(chunk)
            await t.writer.drain()
    await answer
    await t.close()
    return t.status


@contextlib.asynccontextmanager
async def serving(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], port: int = 0
) -> AsyncIterator[int]:
    """An aiohttp.web app routing ``PATH`` to ``handler`` (on ``port``, else a free one):
    its port."""
    app = web.Application()
    app.router.add_post(PATH, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def uvicorn_serving(app: object) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))  # type: ignore[arg-type]
    task = asyncio.ensure_future(server.serve())
    try:
        await wait_until(lambda: server.started, timeout=30)
        yield port
    finally:
        server.should_exit = True
        await task


def _client(emu: Emulator, **options: object) -> FlinksClient:
    """test_webhooks' client, with a safety poll every 50 ms: a refused webhook costs
    little time."""
    return _hook_client(emu, **{"webhook_poll_interval": 0.05, **options})


def _sending_to(port: int, **options: Any) -> Emulator:
    """An emulator (as Flinks) sending its webhooks to ``PATH`` on ``port``."""
    url = f"http://127.0.0.1:{port}{PATH}"
    return Emulator(
        api_key=API_KEY,
        secret_key=SECRET,
        customer_id=CUSTOMER,
        webhook_url=url,
        webhook_secret=HOOK_SECRET,
        **options,
    )


# --- strangers cannot stall the client -----------------------------------------------


async def test_strangers_trickling_big_bodies_do_not_delay_the_clients_calls() -> None:
    """The attack of issue #32 in small: connections declaring 60 MiB bodies send one byte
    and stay open, and forged full-size POSTs keep coming. The client's own data calls,
    each with a 2 MB answer, go on while every one of those connections is still open
    (before the fix, the declared lengths took the client's whole body budget: the calls
    waited for them forever)."""
    # they stay for the whole test; the forged bodies are read as fast as they come
    limits = WebhookLimits(grace=120.0, body_timeout=120.0, max_receiving_rate=1e12)
    async with Emulator(
        api_key=API_KEY, secret_key=SECRET, customer_id=CUSTOMER, payload_bytes=2_000_000
    ) as emu:
        async with _client(emu) as client:  # max_body_bytes_in_flight: 256 MiB
            receiver = client.webhook_receiver(HOOK_SECRET, limits=limits)
            async with serving(receiver.aiohttp_handler) as port:
                trickles = [await Trickle.open(port) for _ in range(5)]
                closed = [asyncio.ensure_future(t.until_closed()) for t in trickles]
                flood = [asyncio.ensure_future(forged_post(port)) for _ in range(3)]
                await wait_until(lambda: receiver.receiving == 8, timeout=60)
                with anyio.fail_after(60):  # far beyond: well under a second unloaded
                    for login in demo_login_ids(5, seed=32):
                        value = await client.accounts_detail(login)
                        assert value.accounts
                assert all(t.still_open() for t in trickles)  # the attack was still on
                for t in trickles:
                    await t.close()
                statuses = await asyncio.gather(*flood)
                await asyncio.gather(*closed)
            assert set(statuses) <= {401, 503, 0}  # forged: refused, never stored
            assert receiver.receiving == receiver.receiving_bytes == 0
            assert receiver.counts["stored"] == 0
            assert client._transport.budget.used == 0


@pytest.mark.parametrize("server", ["aiohttp", "uvicorn"])
async def test_a_slow_sender_is_cut_off_at_its_deadline_and_nothing_is_stored(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A byte, then nothing: after ``grace`` the sender is behind ``min_rate``; it gets
    408 and its connection is closed. A sender that keeps up the rate but never ends is
    cut off at ``body_timeout``. The server closes both: the attacker reads EOF."""
    hub = MemoryWebhooks(stream=True)
    limits = WebhookLimits(grace=0.3, min_rate=1000.0, body_timeout=1.5)
    receiver = WebhookReceiver(hub, HOOK_SECRET, limits=limits)
    app: object = Starlette(routes=[Route(PATH, receiver, methods=["POST"])])
    ctx = serving(receiver.aiohttp_handler) if server == "aiohttp" else uvicorn_serving(app)
    async with ctx as port:
        stalled = await Trickle.open(port, length=10_000)
        with anyio.fail_after(60):
            assert b"408" in (await stalled.until_closed()).split(b"\r\n")[0]
        steady = await Trickle.open(port, length=1_000_000)
        with anyio.fail_after(60):
            closed = asyncio.ensure_future(steady.until_closed())
            while not closed.done():  # 2,000 bytes/s: above min_rate, never done
                with contextlib.suppress(OSError):
                    steady.writer.write(b" " * 200)
                await asyncio.sleep(0.1)
            assert b"408" in closed.result().split(b"\r\n")[0]
        await stalled.close()
        await steady.close()
    assert receiver.counts["too_slow"] == 2 and receiver.counts["stored"] == 0
    assert _stored(hub) == [] and receiver.receiving == receiver.receiving_bytes == 0
    assert FORGED not in caplog.text


@pytest.mark.parametrize("server", ["aiohttp", "uvicorn"])
async def test_a_sender_that_goes_quiet_is_cut_off_after_grace_whatever_it_sent(
    server: str,
) -> None:
    """50,000 bytes at once would buy 50 s at ``min_rate`` 1,000: a sender that then
    goes quiet still holds its place for ``grace`` only (0.3 s)."""
    hub = MemoryWebhooks()
    limits = WebhookLimits(grace=0.3, min_rate=1000.0, body_timeout=120.0)
    receiver = WebhookReceiver(hub, HOOK_SECRET, limits=limits)
    app: object = Starlette(routes=[Route(PATH, receiver, methods=["POST"])])
    ctx = serving(receiver.aiohttp_handler) if server == "aiohttp" else uvicorn_serving(app)
    async with ctx as port:
        quiet = await Trickle.open(port, length=1_000_000, sent=b" " * 50_000)
        with anyio.fail_after(30):  # 50 s before: its average rate held it
            assert b"408" in (await quiet.until_closed()).split(b"\r\n")[0]
        await quiet.close()
    assert receiver.counts["too_slow"] == 1 and receiver.receiving_bytes == 0


async def test_past_its_bounds_a_post_gets_503_at_once_with_its_body_unread() -> None:
    """``max_receiving`` bodies being received: one more is answered 503 (Retry-After)
    before it has sent a byte of its body, and its connection closed. Nothing waits in a
    queue. A declared length takes nothing before it is sent: the body whose bytes would
    go past ``max_receiving_bytes`` is the one refused, mid-body."""
    hub = MemoryWebhooks()
    limits = WebhookLimits(max_receiving=2, max_receiving_bytes=50_000, grace=120.0)
    receiver = WebhookReceiver(hub, HOOK_SECRET, limits=limits)
    async with serving(receiver.aiohttp_handler) as port:
        holding = [
            await Trickle.open(port, length=BIG, sent=b"{"),  # 60 MiB declared, 1 byte sent
            await Trickle.open(port, length=20_000, sent=b" " * 10_000),
        ]
        await wait_until(lambda: receiver.receiving_bytes == 10_001)
        extra = await Trickle.open(port, length=10, sent=b"")  # headers only
        with anyio.fail_after(60):
            answer = await extra.until_closed()
        assert extra.status == 503 and b"Retry-After: 60" in answer
        await holding[0].close()
        await wait_until(lambda: receiver.receiving == 1)
        body = _body("fits") + b" " * 40_000
        assert 40_000 < len(body) < 50_000  # fits alone, not beside the 10,001 held
        signed = {"flinks-authenticity-key": sign_webhook(body, HOOK_SECRET)}
        assert await _post(f"http://127.0.0.1:{port}{PATH}", body, signed) == 503
        await holding[1].close()
        await wait_until(lambda: receiver.receiving == 0)
        assert await _post(f"http://127.0.0.1:{port}{PATH}", body, signed) == 200
        await extra.close()
    assert receiver.counts["busy"] == 2 and receiver.counts["stored"] == 1
    assert receiver.receiving_bytes == 0


async def test_declared_lengths_hold_no_place_a_genuine_delivery_needs() -> None:
    """Connections declaring 64 MiB and sending nothing held every byte of the receiver
    for 188 bytes a second of an attacker's bandwidth: a length now takes nothing before
    it is sent, so genuine deliveries go through beside them."""
    hub = MemoryWebhooks()
    receiver = WebhookReceiver(hub, HOOK_SECRET, limits=WebhookLimits(grace=120.0))
    async with serving(receiver.aiohttp_handler) as port:
        holders = [await Trickle.open(port, length=64 * 1024 * 1024, sent=b"") for _ in range(8)]
        await wait_until(lambda: receiver.receiving == 8)
        for i in range(3):
            body = _body(f"genuine-{i}")
            signed = {"flinks-authenticity-key": sign_webhook(body, HOOK_SECRET)}
            assert await _post(f"http://127.0.0.1:{port}{PATH}", body, signed) == 200
        assert all(t.still_open() for t in holders)
        for t in holders:
            await t.close()
    assert receiver.counts["stored"] == 3 and receiver.counts["busy"] == 0


@pytest.mark.parametrize("server", ["aiohttp", "uvicorn"])
async def test_chunked_and_encoded_bodies_are_refused_unread(server: str) -> None:
    """A chunked body (a stream of tiny chunks costs the server a core to parse) gets 411,
    a compressed one 415 (nothing is decompressed for a stranger); both before a byte of
    the body is read, the connection closed."""
    hub = MemoryWebhooks()
    receiver = WebhookReceiver(hub, HOOK_SECRET)
    app: object = Starlette(routes=[Route(PATH, receiver, methods=["POST"])])
    ctx = serving(receiver.aiohttp_handler) if server == "aiohttp" else uvicorn_serving(app)
    async with ctx as port:
        for header, status in (
            ("Transfer-Encoding: chunked", 411),
            ("Content-Length: 100\r\nContent-Encoding: gzip", 415),
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"POST {PATH} HTTP/1.1\r\nHost: x\r\n{header}\r\n"
                f"flinks-authenticity-key: {FORGED}\r\n\r\n".encode()
            )
            t = Trickle(reader, writer)
            with anyio.fail_after(60):
                await t.until_closed()
            assert t.status == status
            await t.close()
    assert receiver.counts["no_length"] == 1 and receiver.counts["encoded"] == 1
    assert receiver.receiving == 0


async def test_junk_signature_headers_get_401_before_the_body_is_read() -> None:
    hub = MemoryWebhooks()
    receiver = WebhookReceiver(hub, HOOK_SECRET)
    async with serving(receiver.aiohttp_handler) as port:
        for junk in ("junk", "", base64.b64encode(b"short").decode()):
            t = await Trickle.open(port, length=BIG, sent=b"", signature=junk)
            with anyio.fail_after(60):
                await t.until_closed()
            assert t.status == 401
            await t.close()
    assert receiver.counts["bad_signature"] == 3 and receiver.receiving == 0


async def test_a_genuine_delivery_during_a_flood_is_delivered_again_and_the_call_polls() -> None:
    """Strangers hold every place of the receiver when Flinks delivers: Flinks gets 503;
    the waiting call does not wait for the webhook, it gets its data from its safety poll;
    Flinks' next attempt, once the flood is over, is stored."""
    hub_port = free_port()
    # Flinks' 10 tries over 5 h, in small (many, 0.2 s apart): past the flood
    async with _sending_to(
        hub_port, ready_after=0.2, webhook_retry_delay=0.2, webhook_attempts=1000
    ) as emu:
        async with _client(emu, webhook_stream=True) as client:
            limits = WebhookLimits(max_receiving=2, grace=120.0)
            receiver = client.webhook_receiver(HOOK_SECRET, limits=limits)
            async with serving(receiver.aiohttp_handler, hub_port):
                flood = [await Trickle.open(hub_port) for _ in range(2)]
                await wait_until(lambda: receiver.receiving == 2)
                login = demo_login_ids(1, seed=33)[0]
                with anyio.fail_after(60):
                    value = await client.investments(login)
                assert value.accounts
                # Flinks' first attempt may still be on its way when the safety poll has
                # brought the data: it is recorded once answered (503: the places are held)
                await wait_until(lambda: bool(emu.webhooks_sent), 30)
                assert [w.status for w in emu.webhooks_sent][:1] == [503]
                assert emu.counts["Investments"] >= 2  # the safety poll brought the data
                for t in flood:
                    await t.close()
                await wait_until(lambda: any(w.status == 200 for w in emu.webhooks_sent), 60)
    statuses = [w.status for w in emu.webhooks_sent]
    assert statuses[-1] == 200 and set(statuses[:-1]) == {503}
    assert receiver.counts["stored"] == 1


# --- the documented set-ups answer at exactly the registered path ---------------------


def _fastapi(receiver: WebhookReceiver) -> object:
    app = FastAPI()
    app.router.routes.append(Route(PATH, receiver, methods=["POST"]))  # as documented
    return app


def _starlette(receiver: WebhookReceiver) -> object:
    return Starlette(routes=[Route(PATH, receiver, methods=["POST"])])


@pytest.mark.parametrize("framework", ["fastapi", "starlette", "aiohttp"])
async def test_the_documented_set_up_answers_200_at_the_registered_path(framework: str) -> None:
    """Posted as Flinks does, following no redirect: 200 at ``/flinks/webhook`` itself."""
    hub = MemoryWebhooks(stream=True)
    receiver = WebhookReceiver(hub, HOOK_SECRET)
    body = _body(f"at-the-path-{framework}")
    headers = {"flinks-authenticity-key": sign_webhook(body, HOOK_SECRET)}
    if framework == "aiohttp":
        ctx = serving(receiver.aiohttp_handler)
    else:
        ctx = uvicorn_serving((_fastapi if framework == "fastapi" else _starlette)(receiver))
    async with ctx as port:
        assert await _post(f"http://127.0.0.1:{port}{PATH}", body, headers) == 200
    assert [d.request_id for d in _stored(hub)] == [f"at-the-path-{framework}"]


async def test_the_emulator_counts_a_redirect_as_a_failed_delivery() -> None:
    """Why ``app.mount()`` is not the documented set-up: Starlette's Mount answers 307 at
    the mount's own path, and a webhook sender (the emulator, as Flinks) does not follow."""
    app = FastAPI()
    hub = MemoryWebhooks()
    app.mount(PATH, WebhookReceiver(hub, HOOK_SECRET))
    async with uvicorn_serving(app) as port:
        async with _sending_to(port, ready_after=0.05, webhook_attempts=1) as emu:
            async with _client(emu) as client:
                await client.investments(demo_login_ids(1, seed=34)[0])
            await wait_until(lambda: bool(emu.webhooks_sent), timeout=60)
    assert [w.status for w in emu.webhooks_sent] == [307]
    assert await hub.wait(emu.webhooks_sent[0].request_id, 0.01) is None


async def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_receiving"):
        WebhookLimits(max_receiving=0)
    receiver = WebhookReceiver(MemoryWebhooks(), HOOK_SECRET, max_body_bytes=10)
    assert receiver.max_body_bytes == receiver.limits.max_body_bytes == 10
    with pytest.deprecated_call():
        WebhookReceiver(MemoryWebhooks(), HOOK_SECRET, budget=object())  # type: ignore[arg-type]


async def test_bodies_are_read_at_most_max_receiving_rate_and_the_wait_is_not_the_senders() -> None:
    """A flood of forged full-size bodies costs the loop what reading ``max_receiving_rate``
    costs: past a first second's worth, reading waits. The wait is ours, not the sender's:
    it is added to the sender's deadline, so a genuine body paced past ``body_timeout``
    is still stored."""
    hub = MemoryWebhooks(stream=True)
    rate = 100_000.0
    limits = WebhookLimits(max_receiving_rate=rate, body_timeout=1.0, grace=0.5)
    receiver = WebhookReceiver(hub, HOOK_SECRET, limits=limits)
    body = _body("paced") + b" " * 300_000
    signed = {"flinks-authenticity-key": sign_webhook(body, HOOK_SECRET)}
    async with serving(receiver.aiohttp_handler) as port:
        started = anyio.current_time()
        assert await _post(f"http://127.0.0.1:{port}{PATH}", body, signed) == 200
        took = anyio.current_time() - started
    # the sleeps alone take this long (a lower bound: no machine is faster than them)
    assert took >= len(body) / rate - 1.0 - 0.1 > limits.body_timeout
    assert [d.request_id for d in _stored(hub)] == ["paced"]
