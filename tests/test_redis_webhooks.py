"""Webhooks across real OS processes on a real redis-server: the receiver in one process,
awaiting calls in two others; the receiver killed with SIGKILL mid-run and restarted; the
redis-server stopped and restarted. Counted from outside: the emulator's webhook attempts
and requests, the callers' printed lines, the stream consumer's deliveries.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

import anyio
import pytest

from flinks_async import FlinksClient, Investments, WebhookDelivery, sign_webhook
from flinks_async._redis import RedisWebhooks
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import CUSTOMER, free_port, needs_redis, start_redis, wait_until
from .test_webhooks import HOOK_SECRET, Served, _body, _post

pytestmark = [pytest.mark.anyio, needs_redis]

# The receiver: a client with webhooks on Redis and a stream, serving the receiver on a
# port; prints "ready" once it listens.
RECEIVER = """
import asyncio, sys
from aiohttp import web
from flinks_async import FlinksClient
async def main(redis_url, customer, port, secret):
    async with FlinksClient(customer, redis_url=redis_url, webhooks=True,
                            webhook_stream=True) as client:
        app = web.Application()
        app.router.add_post("/flinks/webhook", client.webhook_receiver(secret).aiohttp_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int(port), reuse_address=True).start()
        print("ready", flush=True)
        await asyncio.Event().wait()
asyncio.run(main(*sys.argv[1:]))
"""

# A caller: pulls its logins with webhooks on Redis (safety polls far beyond the test),
# prints one line per result as it comes: login, ok, time.time().
CALLER = """
import asyncio, json, sys, time
from flinks_async import FlinksClient
async def main(url, redis_url, customer, ids):
    ids = ids.split(",")
    async with FlinksClient(customer, base_url=url, redis_url=redis_url, webhooks=True,
                            webhook_poll_interval=600, poll_timeout=120) as client:
        print("ready", flush=True)
        async with client.many("investments", ids, concurrency=len(ids)) as results:
            async for r in results:
                print(json.dumps({"login": r.login_id, "ok": r.ok, "at": time.time(),
                                  "error": repr(r.error)}), flush=True)
asyncio.run(main(*sys.argv[1:]))
"""


def _hub(url: str, **options: Any) -> RedisWebhooks:
    return RedisWebhooks.from_url(url, delivery_from=WebhookDelivery.from_body, **options)


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
    )


async def _ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = await anyio.to_thread.run_sync(proc.stdout.readline)
    assert line.startswith("ready"), line


async def test_three_processes_every_call_gets_its_data_through_a_killed_receiver(
    redis_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    redis_url, _ = redis_server
    ids = demo_login_ids(80, seed=21)
    port = free_port()
    consumer = _hub(redis_url, customer_id=CUSTOMER, stream=True)
    receiver = _spawn(RECEIVER, redis_url, CUSTOMER, str(port), HOOK_SECRET)
    callers: list[subprocess.Popen[str]] = []
    try:
        await _ready(receiver)
        async with Emulator(
            ready_after=0.3,
            webhook_url=f"http://127.0.0.1:{port}/flinks/webhook",
            webhook_secret=HOOK_SECRET,
            webhook_retry_delay=0.3,
            # deliveries spread over 3 s, half of them sent twice
            webhook_faults={"shuffle:3.0": 1.0, "duplicate": 0.5},
        ) as emu:
            callers = [
                _spawn(CALLER, emu.url, redis_url, CUSTOMER, ",".join(part))
                for part in (ids[:40], ids[40:])
            ]
            for c in callers:
                await _ready(c)

            def delivered() -> int:
                return sum(w.status == 200 for w in emu.webhooks_sent)

            await wait_until(lambda: delivered() >= 10, timeout=60)
            receiver.send_signal(signal.SIGKILL)  # mid-run, no goodbye
            receiver.wait()
            assert receiver.stdout is not None
            receiver.stdout.close()
            await wait_until(lambda: any(w.status == 0 for w in emu.webhooks_sent), timeout=60)
            assert delivered() < len(ids)  # it died mid-run
            receiver = _spawn(RECEIVER, redis_url, CUSTOMER, str(port), HOOK_SECRET)
            await _ready(receiver)

            lines = []
            for c in callers:
                out, _ = await anyio.to_thread.run_sync(c.communicate)
                lines += [json.loads(line) for line in out.splitlines()]
            assert c.returncode == 0
            # every call got its data, once, and no call polled: each ended on its webhook
            assert sorted(x["login"] for x in lines) == sorted(ids)
            assert all(x["ok"] for x in lines), [x["error"] for x in lines if not x["ok"]][:3]
            assert emu.counts["Investments"] == len(ids)
            assert emu.authorizations == {i.lower(): 1 for i in ids}
            lost = {w.login_id for w in emu.webhooks_sent if w.status == 0}
            assert lost  # some deliveries met the dead receiver, and were delivered again
            sent = {w.login_id.lower(): w.sent_at for w in emu.webhooks_sent if w.status == 200}
            assert {x.lower() for x in lost} <= set(sent)
            lag = [x["at"] - sent[x["login"].lower()] for x in lines]
            assert max(lag) < 30.0, max(lag)  # woken by the webhook, not a 600 s safety poll

        # the stream consumer saw each delivery once, the retried ones included
        seen: list[WebhookDelivery] = []
        with anyio.fail_after(60):
            async for delivery in consumer.deliveries(consumer="test", block=0.2):
                seen.append(delivery)
                await consumer.ack(delivery)
                if len(seen) == len(ids):
                    break
        assert sorted(d.login_id or "" for d in seen) == sorted(i for i in ids)
        assert all(isinstance(d.value(), Investments) for d in seen[:3])
        # acknowledged entries are deleted: no personal data left in the stream
        assert await consumer._redis.xlen(consumer.stream_key) == 0
        assert await consumer._redis.keys(f"{consumer.prefix}body:*") == []
        names = b" ".join(await consumer._redis.keys("*")).decode().lower()
        rids = {r.request_id for r in emu.requests if r.request_id}
        assert not any(i.lower() in names for i in ids) and not any(r in names for r in rids)
    finally:
        for p in (receiver, *callers):
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
        await consumer.aclose()


async def test_a_webhook_before_the_wait_and_after_a_redis_restart_still_wakes_the_call() -> None:
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    server = start_redis(port, "--port", str(port))
    publisher = _hub(redis_url, customer_id=CUSTOMER)
    waiter = _hub(redis_url, customer_id=CUSTOMER)
    try:
        early = _body("rid-early")
        assert await publisher.store(WebhookDelivery.from_body(early))
        assert not await publisher.store(WebhookDelivery.from_body(early))  # a repeat
        assert await waiter.wait("rid-early", 5.0) == early  # stored before the wait began
        assert await waiter.wait("rid-early", 0.01) is None  # taken by one call

        async def later(body: bytes) -> None:
            await anyio.sleep(0.2)
            await publisher.store(WebhookDelivery.from_body(body))

        async with anyio.create_task_group() as tg:
            tg.start_soon(later, _body("rid-1"))
            started = time.monotonic()
            assert await waiter.wait("rid-1", 30.0) == _body("rid-1")
            assert time.monotonic() - started < 20  # woken, not timed out

        server.kill()  # an outage: the wait sleeps its time and reports nothing
        server.wait()
        assert await waiter.wait("rid-2", 0.3) is None
        server = start_redis(port, "--port", str(port))  # back, empty
        async with anyio.create_task_group() as tg:
            tg.start_soon(later, _body("rid-3"))
            got = None
            with anyio.fail_after(60):
                while got is None:  # the listener resubscribes after the restart
                    got = await waiter.wait("rid-3", 1.0)
            assert got == _body("rid-3")
    finally:
        await waiter.aclose()
        await publisher.aclose()
        server.kill()
        server.wait()


async def test_calls_on_redis_fall_back_to_safety_polls_when_redis_is_down() -> None:
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"  # nothing listens there
    async with Emulator(ready_after=0.2) as emu:
        async with FlinksClient(
            CUSTOMER,
            base_url=emu.url,
            redis_url=redis_url,
            redis_single_flight=False,
            webhooks=True,
            webhook_poll_interval=0.1,
            poll_timeout=60,
            coordination_timeout=0.2,
        ) as client:
            value = await client.investments(demo_login_ids(1, seed=2)[0])
    assert isinstance(value, Investments)
    assert emu.counts["Investments"] >= 2  # the data came from a safety poll


async def test_a_receiver_on_redis_answers_503_when_redis_is_down() -> None:
    port = free_port()
    hub = _hub(f"redis://127.0.0.1:{port}/0", customer_id=CUSTOMER, timeout=0.2)
    try:
        from flinks_async import WebhookReceiver

        receiver = WebhookReceiver(hub, HOOK_SECRET)
        served = Served(receiver.aiohttp_handler)
        await served.start()
        try:
            body = _body()
            status = await _post(
                served.url, body, {"flinks-authenticity-key": sign_webhook(body, HOOK_SECRET)}
            )
        finally:
            await served.stop()
        assert status == 503  # Flinks delivers again later
    finally:
        await hub.aclose()
