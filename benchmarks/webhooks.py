"""Webhooks against polling: requests per login as the emulator counts them, and the delay
from a webhook being sent to the awaiting call returning.

1,000 logins, each pending 6-8 s (Flinks' "60 s" scaled down 10x, spread over 2 s as logins
finish at different times), polled every 1 s (``poll_interval``, Flinks' 10 s scaled the
same way) when polling only; a secret key, so each login also costs an authorize token.
With webhooks the emulator POSTs each answer when it is ready; the calls wait for them
(safety polls every 600 s: never reached).

* polling only: one process;
* webhooks, one process: the receiver is served by the same process as the calls
  (:class:`~flinks_async.MemoryWebhooks`);
* webhooks, 3 processes on Redis: ``flinks-async serve-webhooks`` receives in one process,
  two processes of 500 calls each wait on a redis-server on loopback. The delay is the
  caller's ``time.time()`` when its result came, minus the emulator's when the webhook
  was sent (one machine, one clock).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import statistics
import sys
import time
from typing import Any

import anyio
import anyio.abc
from aiohttp import web
from anyio.streams.buffered import BufferedByteReceiveStream

from flinks_async import FlinksClient
from flinks_async.testing import Emulator, demo_login_ids

from ._common import table
from .coordination import redis_server

CUSTOMER = "43387ca6-0391-4c82-857d-70d95f087ecb"
SECRET = "whsec-benchmark"
PENDING = 6.0
SPREAD = 2.0
INTERVAL = 1.0
KEY = "secret-key-benchmark"

CALLER = """
import asyncio, json, sys, time
from flinks_async import FlinksClient
async def main(url, redis_url, customer, ids):
    ids = ids.split(",")
    async with FlinksClient(customer, base_url=url, redis_url=redis_url, webhooks=True,
                            webhook_poll_interval=600, poll_timeout=600,
                            max_connections=100) as client:
        print("ready", flush=True)
        sys.stdin.readline()
        async with client.many("investments", ids, concurrency=len(ids)) as results:
            async for r in results:
                print(json.dumps([r.login_id, r.ok, time.time()]), flush=True)
asyncio.run(main(*sys.argv[1:]))
"""


@dataclasses.dataclass
class WebhookResult:
    mode: str
    logins: int
    requests_per_login: float
    wall: float
    delays: list[float]  # seconds, webhook sent -> call returned (empty when polling)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _emulator(port: int) -> Emulator:
    return Emulator(
        ready_after=PENDING,
        ready_spread=SPREAD,
        secret_key=KEY,
        webhook_url=f"http://127.0.0.1:{port}/flinks/webhook",
        webhook_secret=SECRET,
        record=0,
    )


async def _one_process(ids: list[str], webhooks: bool) -> WebhookResult:
    port = _free_port()
    returned: dict[str, float] = {}
    async with _emulator(port) as emu:
        client = FlinksClient(
            CUSTOMER,
            base_url=emu.url,
            secret_key=KEY,
            poll_interval=INTERVAL,
            webhooks=webhooks,
            webhook_poll_interval=600,
            poll_timeout=600,
        )
        async with client:
            runner = None
            if webhooks:
                app = web.Application()
                app.router.add_post(
                    "/flinks/webhook", client.webhook_receiver(SECRET).aiohttp_handler
                )
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", port).start()
            started = time.monotonic()
            try:
                async with client.many("investments", ids, concurrency=len(ids)) as results:
                    async for r in results:
                        assert r.ok, r.error
                        returned[r.login_id.lower()] = time.time()
            finally:
                if runner is not None:
                    await runner.cleanup()
            wall = time.monotonic() - started
        sent = {w.login_id.lower(): w.sent_at for w in emu.webhooks_sent if w.status == 200}
        delays = [returned[k] - sent[k] for k in returned] if webhooks else []
        mode = "webhooks, one process" if webhooks else "polling only"
        return WebhookResult(mode, len(ids), emu.requests_total / len(ids), wall, delays)


async def _line(stream: BufferedByteReceiveStream) -> str:
    return (await stream.receive_until(b"\n", 1 << 20)).decode()


async def _rest(stream: BufferedByteReceiveStream) -> str:
    chunks = []
    try:
        while True:
            chunks.append(await stream.receive())
    except (anyio.EndOfStream, anyio.ClosedResourceError):
        pass
    return b"".join(chunks).decode()


async def _three_processes(ids: list[str], redis_url: str) -> WebhookResult:
    port = _free_port()
    env = {
        **os.environ,
        "FLINKS_CUSTOMER_ID": CUSTOMER,
        "FLINKS_REDIS_URL": redis_url,
        "FLINKS_WEBHOOK_SECRET": SECRET,
        "FLINKS_SECRET_KEY": KEY,
    }
    serve = [sys.executable, "-m", "flinks_async", "serve-webhooks"]
    receiver = await anyio.open_process([*serve, "--listen", f"127.0.0.1:{port}"], env=env)
    callers: list[anyio.abc.Process] = []
    try:
        assert receiver.stderr is not None
        line = await _line(BufferedByteReceiveStream(receiver.stderr))
        assert "receiving webhooks" in line, line
        async with _emulator(port) as emu:
            half = len(ids) // 2
            for part in (ids[:half], ids[half:]):
                args = [sys.executable, "-c", CALLER, emu.url, redis_url, CUSTOMER]
                callers.append(await anyio.open_process([*args, ",".join(part)], env=env))
            outs = []
            for c in callers:
                assert c.stdout is not None
                outs.append(BufferedByteReceiveStream(c.stdout))
                assert (await _line(outs[-1])).startswith("ready")
            started = time.monotonic()
            for c in callers:
                assert c.stdin is not None
                await c.stdin.send(b"go\n")
            returned: dict[str, float] = {}
            for out in outs:
                for row in (await _rest(out)).splitlines():
                    login, ok, at = json.loads(row)
                    assert ok
                    returned[login.lower()] = at
            wall = time.monotonic() - started
        sent = {w.login_id.lower(): w.sent_at for w in emu.webhooks_sent if w.status == 200}
        delays = [returned[k] - sent[k] for k in returned]
        return WebhookResult(
            "webhooks, 3 processes on Redis",
            len(ids),
            emu.requests_total / len(ids),
            wall,
            delays,
        )
    finally:
        for p in (receiver, *callers):
            if p.returncode is None:
                p.terminate()
            await p.wait()
            await p.aclose()


async def run(logins: int = 1000) -> list[WebhookResult]:
    ids = demo_login_ids(logins, seed=99)
    results = [await _one_process(ids, False), await _one_process(ids, True)]
    with redis_server() as redis_url:
        if redis_url is not None:
            results.append(await _three_processes(ids, redis_url))
    return results


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def markdown(results: list[WebhookResult]) -> str:
    base = results[0].requests_per_login
    rows: list[Any] = []
    for r in results:
        delay = (
            f"{statistics.median(r.delays) * 1e3:.1f} / {_pct(r.delays, 0.99) * 1e3:.1f} / "
            f"{max(r.delays) * 1e3:.1f}"
            if r.delays
            else "-"
        )
        rows.append(
            (
                r.mode,
                f"{r.requests_per_login:.2f}",
                f"{r.requests_per_login / base:.2f}x",
                delay,
                f"{r.wall:.1f}",
            )
        )
    return (
        f"{results[0].logins:,} logins, each ready {PENDING:.0f}-{PENDING + SPREAD:.0f} s after "
        f"its first request (Flinks' 60 s scaled down 10x; polling every {INTERVAL:.0f} s "
        "stands for its 10 s), with a secret key (a token per Authorize); webhooks sent as "
        "each answer is ready; requests counted by the emulator.\n\n"
        + table(
            [
                "mode",
                "requests per login",
                "vs polling",
                "webhook sent → call returned, ms (p50 / p99 / max)",
                "wall s",
            ],
            rows,
        )
    )
