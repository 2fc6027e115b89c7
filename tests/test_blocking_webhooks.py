"""Webhooks for sync apps: the blocking client's receiver as a WSGI app (and as a call
for a Django view), waking the blocking calls waiting for them."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from anyio.from_thread import start_blocking_portal

from flinks_async import ConfigurationError, Investments, WebhookLimits, sign_webhook
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import API_KEY, CUSTOMER, SECRET, fast_sync_client

HOOK_SECRET = "hook-secret-34"


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def wsgi_server() -> Iterator[WSGIServer]:
    """A ``wsgiref`` server on a free loopback port, serving from a thread (its app set
    later: ``server.set_app``)."""
    server = make_server("127.0.0.1", 0, lambda e, s: [], handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_blocking_calls_end_on_webhooks_received_by_the_wsgi_app() -> None:
    ids = demo_login_ids(6, seed=3404)
    with wsgi_server() as server, start_blocking_portal() as portal:
        emu = Emulator(
            api_key=API_KEY,
            secret_key=SECRET,
            customer_id=CUSTOMER,
            ready_after=0.2,
            webhook_url=f"http://127.0.0.1:{server.server_port}/flinks/webhook",
            webhook_secret=HOOK_SECRET,
        )
        with (
            portal.wrap_async_context_manager(emu),
            fast_sync_client(emu, webhooks=True, webhook_poll_interval=600.0) as client,
        ):
            receiver = client.webhook_receiver(HOOK_SECRET)
            server.set_app(receiver)
            assert isinstance(client.investments(ids[0]), Investments)
            with client.investments_many(ids[1:]) as results:
                assert all(r.ok for r in results)
            # only the webhooks ended the calls: a token, Authorize, one data request each
            assert emu.counts["Investments"] == len(ids)
            assert receiver.receiver.counts["stored"] == len(ids)


def environ(body: bytes, method: str = "POST", **headers: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    env.update({"HTTP_" + k.upper(): v for k, v in headers.items()})
    return env


def test_the_wsgi_app_and_the_view_call_keep_the_receivers_gates(emu_thread: Emulator) -> None:
    with fast_sync_client(emu_thread, webhooks=True) as client:
        receiver = client.webhook_receiver(HOOK_SECRET, max_body_bytes=1000)
        answers: list[str] = []

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            answers.append(status)

        body = b'{"ResponseType": "Investments", "RequestId": "r-1", "HttpStatusCode": 200}'
        signed = sign_webhook(body, HOOK_SECRET)
        assert receiver(environ(body, method="GET"), start_response) == [b"POST only"]
        no_length = environ(body, flinks_authenticity_key=signed)
        del no_length["CONTENT_LENGTH"]
        receiver(no_length, start_response)
        receiver(environ(b"{" + b" " * 2000 + b"}", flinks_authenticity_key=signed), start_response)
        forged = sign_webhook(b"x", HOOK_SECRET)
        receiver(environ(body, flinks_authenticity_key=forged), start_response)
        receiver(environ(body, flinks_authenticity_key=signed), start_response)
        assert [a.split()[0] for a in answers] == ["405", "411", "413", "401", "200"]
        # a Django view: status, text = receiver.receive(request.headers, request.body)
        assert receiver.receive({"Flinks-Authenticity-Key": signed}, body)[0] == 200
        assert HOOK_SECRET not in repr(receiver)
    with (
        fast_sync_client(emu_thread) as off,
        pytest.raises(ConfigurationError, match="webhooks=True"),
    ):
        off.webhook_receiver(HOOK_SECRET)


class _Unread(io.RawIOBase):
    """A request body that must not be read (the app refuses before it)."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read before the POST was admitted")


class _Held(io.RawIOBase):
    """A body whose sender stalls until ``go`` is set (a stranger holding a place)."""

    def __init__(self, body: bytes) -> None:
        self.body, self.go, self.reading = body, threading.Event(), threading.Event()

    def read(self, size: int = -1) -> bytes:
        self.reading.set()
        assert self.go.wait(30)
        return self.body


def test_the_wsgi_app_refuses_before_reading_a_body_as_the_async_receiver_does(
    emu_thread: Emulator,
) -> None:
    """Strangers reach the WSGI app too: what the async receiver refuses unread, the app
    refuses without reading a byte (no signature, a compressed body), and bodies being read
    at once are bounded by ``max_receiving`` (one more: 503 with ``Retry-After``)."""
    body = b'{"ResponseType": "Investments", "RequestId": "r-2", "HttpStatusCode": 200}'
    signed = sign_webhook(body, HOOK_SECRET)
    limits = WebhookLimits(max_receiving=1)
    with fast_sync_client(emu_thread, webhooks=True) as client:
        receiver = client.webhook_receiver(HOOK_SECRET, limits=limits)
        answers: list[tuple[str, list[tuple[str, str]]]] = []

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            answers.append((status.split()[0], headers))

        def unread(**headers: str) -> dict[str, Any]:
            return {**environ(body, **headers), "wsgi.input": _Unread()}

        receiver(unread(), start_response)  # no signature header
        receiver(unread(flinks_authenticity_key="not-base64-of-32-bytes"), start_response)
        receiver(unread(flinks_authenticity_key=signed, content_encoding="gzip"), start_response)
        held = _Held(body)
        stalled = {**environ(body, flinks_authenticity_key=signed), "wsgi.input": held}
        first = threading.Thread(target=receiver, args=(stalled, start_response))
        first.start()
        assert held.reading.wait(30)
        receiver(unread(flinks_authenticity_key=signed), start_response)  # every place held
        held.go.set()
        first.join(30)
        receiver(environ(body, flinks_authenticity_key=signed), start_response)  # a place again
    statuses = [status for status, _ in answers]
    assert statuses == ["401", "401", "415", "503", "200", "200"]
    busy = dict(answers[3][1])
    assert busy["Retry-After"] == str(limits.retry_after) and busy["Connection"] == "close"
    assert receiver.receiver.counts["stored"] == 1  # the same delivery twice: kept once
