"""Webhooks on the command line: ``serve-webhooks`` (a receiver storing into Redis, for
pulls and workers on any machine) and what ``pull --webhooks`` shares with it: the
listening address, the secrets (``FLINKS_WEBHOOK_SECRET``, comma-separated during a
rotation, or ``--webhook-secret-file``), and serving a client's receiver."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from .._client import FlinksClient
from .._cmdline import UsageError, add_loop, read_secret

__all__ = ["DEFAULT_PATH", "add_parser", "listen_address", "receiving", "secrets", "serve"]

#: where the receiver answers, unless ``--webhook-path`` says otherwise
DEFAULT_PATH = "/flinks/webhook"


def add_parser(sub: Any) -> None:
    """``serve-webhooks`` and its options, on the command line's subparsers."""
    w = sub.add_parser(
        "serve-webhooks",
        help="receive Flinks webhooks into Redis, for pulls and workers anywhere",
        description="Serve the webhook receiver (POST PATH on --listen): signatures checked "
        "against FLINKS_WEBHOOK_SECRET (comma-separated to accept several during a "
        "rotation) or --webhook-secret-file, each delivery stored once in the Redis of "
        "FLINKS_REDIS_URL (or --redis-url), waking the `pull --webhooks` and `worker` "
        "processes awaiting it (FLINKS_WEBHOOKS=1). --stream also keeps every delivery in "
        "a Redis Stream for your own consumers.",
    )
    w.add_argument("--customer-id", help="your Flinks customer id (else FLINKS_CUSTOMER_ID)")
    w.add_argument("--redis-url", help="the shared Redis (else FLINKS_REDIS_URL)")
    add_receiver_arguments(w, listen_default="127.0.0.1:8080")
    w.add_argument("--stream", action="store_true", help="keep every delivery in a Redis Stream")
    add_loop(w)


def add_receiver_arguments(p: argparse.ArgumentParser, *, listen_default: str | None) -> None:
    """The receiver's options, shared by ``serve-webhooks`` and ``pull``."""
    p.add_argument(
        "--webhook-listen",
        "--listen",
        dest="webhook_listen",
        default=listen_default,
        metavar="HOST:PORT",
        help="where the webhook receiver listens"
        + (f" (default {listen_default})" if listen_default else ""),
    )
    p.add_argument(
        "--webhook-path", default=DEFAULT_PATH, help=f"the receiver's path ({DEFAULT_PATH})"
    )
    p.add_argument(
        "--webhook-secret-file",
        help="file holding the webhook secret(s), comma-separated (else FLINKS_WEBHOOK_SECRET)",
    )


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``; :class:`UsageError` when it is not one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--webhook-listen takes HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def secrets(args: argparse.Namespace) -> list[str]:
    """The webhook secrets; :class:`UsageError` when none is given."""
    text = read_secret(args.webhook_secret_file, "FLINKS_WEBHOOK_SECRET") or ""
    found = [s.strip() for s in text.split(",") if s.strip()]
    if not found:
        raise UsageError(
            "webhooks need their secret: set FLINKS_WEBHOOK_SECRET or pass --webhook-secret-file"
        )
    return found


@contextlib.asynccontextmanager
async def receiving(
    client: FlinksClient, address: tuple[str, int], path: str, keys: list[str]
) -> AsyncIterator[None]:
    """Serve ``client``'s webhook receiver on ``address`` and ``path`` while inside."""
    app = web.Application(client_max_size=client.settings.max_response_bytes + 1024)
    app.router.add_post(path, client.webhook_receiver(keys).aiohttp_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, address[0], address[1]).start()
        yield
    finally:
        await runner.cleanup()


async def serve(args: argparse.Namespace) -> int:
    """``serve-webhooks``: receive until interrupted."""
    keys = secrets(args)
    address = listen_address(args.webhook_listen)
    client = FlinksClient(
        args.customer_id, redis_url=args.redis_url, webhooks=True, webhook_stream=args.stream
    )
    if client.settings.redis_url is None:
        await client.aclose()
        raise UsageError("serve-webhooks stores into Redis: set FLINKS_REDIS_URL or --redis-url")
    async with client, receiving(client, address, args.webhook_path, keys):
        print(
            f"flinks-async: receiving webhooks on http://{args.webhook_listen}"
            f"{args.webhook_path} into {client.webhooks!r}",
            file=sys.stderr,
            flush=True,
        )
        await asyncio.Event().wait()
    return 0  # pragma: no cover - interrupted above
