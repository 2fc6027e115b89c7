"""The webhook receiver for sync web apps: a WSGI app, and a call for a Django view.

A :class:`WSGIWebhookReceiver` is :class:`~flinks_async.WebhookReceiver` (the same gates,
signature check and hub) run in a blocking client's loop. Sync apps get it from
``SyncFlinksClient.webhook_receiver(secret)`` and either mount it as a WSGI app (any WSGI
server: gunicorn, uWSGI, ``wsgiref``; Flask's ``DispatcherMiddleware``) or call
:meth:`WSGIWebhookReceiver.receive` from a view (Django: ``request.headers``,
``request.body``). It stores into the client's hub: in memory, it wakes the calls of this
process; with ``redis_url``, the calls of every process and Celery worker.

What the WSGI server does before the app is called (reading the request line and the
headers, slow senders, the number of workers) is the server's job: put it behind the
same reverse proxy as the rest of the app. The app refuses, before reading a byte of the
body and closing the connection, what the async receiver refuses unread: a method other
than POST (``405``), no signature header or one that is not Base64 of 32 bytes (``401``),
no ``Content-Length`` (``411``), a ``Content-Encoding`` (``415``), a length over
``max_body_bytes`` (``413``), and a POST finding ``max_receiving`` bodies being read by
this app already (``503`` with ``Retry-After``); so at most ``max_receiving *
max_body_bytes`` bytes are held before signatures are checked. It then reads the body and
hands it to the receiver's gates (signature, shape, store).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from ._portal import LoopThread
from ._receiver import WebhookReceiver

__all__ = ["WSGIWebhookReceiver"]

StartResponse = Callable[[str, list[tuple[str, str]]], object]


class WSGIWebhookReceiver:
    """A :class:`~flinks_async.WebhookReceiver` for sync code (see the module docstring):
    a WSGI app, and :meth:`receive` for a view. ``make()`` builds the async receiver (again
    in a child after fork, with the client's new hub)."""

    def __init__(self, loop: LoopThread[Any], make: Callable[[], WebhookReceiver]) -> None:
        self._loop = loop
        self._make = make
        self._receiver = make()
        self._generation = loop.generation
        #: the bodies this app reads at once (``max_receiving``), before their signature
        self._places = threading.BoundedSemaphore(self._receiver.limits.max_receiving)

    @property
    def receiver(self) -> WebhookReceiver:
        """The async receiver (its ``counts``, ``limits``...)."""
        if self._generation != self._loop.generation:
            self._receiver, self._generation = self._make(), self._loop.generation
        return self._receiver

    def __repr__(self) -> str:
        return f"<WSGIWebhookReceiver {self.receiver!r}>"

    def receive(self, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """Handle one POST whose body is read: ``(status, text)`` to answer (blocking;
        see :meth:`WebhookReceiver.receive`). A Django view::

            status, text = receiver.receive(request.headers, request.body)
            return HttpResponse(text, status=status, content_type="text/plain")
        """
        return self._loop.run(functools.partial(self.receiver.receive, headers, body))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI app (PEP 3333): answers every path it is routed."""
        status, text, extra = self._answer(environ)
        reason = HTTPStatus(status).phrase
        headers = [("Content-Type", "text/plain; charset=utf-8"), *extra]
        if status >= 400:
            headers.append(("Connection", "close"))
        start_response(f"{status} {reason}", headers)
        return [text.encode()]

    def _answer(self, environ: Mapping[str, Any]) -> tuple[int, str, tuple[tuple[str, str], ...]]:
        if environ.get("REQUEST_METHOD") != "POST":
            return 405, "POST only", ()
        headers = _headers(environ)
        given = str(environ.get("CONTENT_LENGTH") or "")
        receiver = self.receiver
        refused = receiver.admit(headers, int(given) if given.isdigit() else None)
        if refused is None and not self._places.acquire(blocking=False):
            refused = receiver.busy()
        if refused is not None:
            return refused.status, refused.text, refused.headers
        if not given.isdigit():  # the limits allow no length: a WSGI app cannot read one
            self._places.release()
            return 411, "Content-Length required", ()
        try:
            body = environ["wsgi.input"].read(int(given))
        finally:
            self._places.release()
        return (*self.receive(headers, body), ())


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers from a WSGI environ (``HTTP_FLINKS_AUTHENTICITY_KEY`` →
    ``flinks-authenticity-key``)."""
    out = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k[:5] == "HTTP_"}
    for key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
        if environ.get(key):
            out[key.replace("_", "-").lower()] = str(environ[key])
    return out
