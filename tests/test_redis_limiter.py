"""The shared rate limit keeps its promise through pool queueing, a crowd of callers, a
cancelled take and a Redis outage, counted where Flinks counts: the emulator's recorded
arrivals. Real redis-server (stopped and restarted inside the test), real OS processes.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

import anyio
import pytest

from flinks_async import FlinksClient
from flinks_async._redis import RedisRateLimiter, connect, share_of
from flinks_async.testing import Emulator, busiest_window, demo_login_ids

from .conftest import CUSTOMER, fast_client, free_port, needs_redis, start_redis

pytestmark = [pytest.mark.anyio, needs_redis]


async def test_requests_queued_for_a_pooled_connection_keep_their_slots(
    redis_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """rate_limit=10, 10 pooled connections, connect_timeout=0.5: ten logins whose
    Authorize takes 3 s hold every connection while 40 more queue for one. However long
    they queue, no second at the emulator holds more than 10 arrivals (v0.x's Redis slots
    lapsed after connect_timeout + window and let 50 through together)."""
    redis_url, _ = redis_server
    ids = demo_login_ids(50, seed=120)
    async with Emulator(pending=0, payload_bytes=300) as emu:
        for login in ids[:10]:
            emu.set_login(login, pending=0, faults=["slow:3@authorize"])
        async with fast_client(
            emu,
            redis_url=redis_url,
            rate_limit=10,
            max_connections=10,
            connect_timeout=0.5,
            poll_timeout=120,
        ) as client:
            async with anyio.create_task_group() as tg:
                for login in ids[:10]:
                    tg.start_soon(client.investments, login)
                await anyio.sleep(0.05)
                async with client.investments_many(ids[10:], concurrency=40) as results:
                    assert all([r.ok async for r in results])
        assert emu.counts["Authorize"] == 50 and emu.counts["Investments"] == 50
        assert emu.max_requests_in_window(1.0) <= 10


async def test_hundreds_of_callers_wait_for_a_redis_connection_instead_of_failing(
    redis_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """400 logins at once on one client whose Redis URL allows 4 connections
    (``?max_connections=4``): every one ends ok (v0.x: CoordinationError, "Too many
    connections", for those that found the pool full), and the redis-server never sees
    more than the pool."""
    redis_url, _ = redis_server
    pooled = f"{redis_url}?max_connections=4"
    import redis.asyncio as aioredis

    peak = 0
    done = anyio.Event()

    async def watch() -> None:
        nonlocal peak
        async with aioredis.Redis.from_url(redis_url) as r:
            while not done.is_set():
                info = await r.info("clients")
                peak = max(peak, int(info["connected_clients"]) - 1)  # not this one
                await anyio.sleep(0.02)

    ids = demo_login_ids(400, seed=121)
    async with Emulator(pending=2, payload_bytes=300) as emu:
        async with fast_client(emu, redis_url=pooled, rate_limit=2000, poll_timeout=120) as c:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                async with c.investments_many(ids, concurrency=400) as results:
                    outcomes = [r async for r in results]
                done.set()
    assert [r.error for r in outcomes if not r.ok] == []
    assert len(outcomes) == 400
    assert 0 < peak <= 4 + 1  # the pool, and a connection being replaced


async def test_a_take_cancelled_while_its_script_runs_holds_no_slot() -> None:
    """The take is sent, Redis runs it late (DEBUG SLEEP holds the server), and the caller
    is cancelled meanwhile: the slot the script added is dropped as soon as Redis answers
    again, not held for the whole hold time."""

    port = free_port()
    proc = start_redis(port, "--port", str(port), "--enable-debug-command", "yes")
    url = f"redis://127.0.0.1:{port}/0"
    try:
        redis = connect(url, timeout=5)
        limiter = RedisRateLimiter(
            redis, shown_url=url, customer_id=CUSTOMER, capacity=5, window=1.0, fallback=False
        )
        import redis.asyncio as aioredis

        async with aioredis.Redis.from_url(url) as other:
            async with anyio.create_task_group() as tg:
                tg.start_soon(other.execute_command, "DEBUG", "SLEEP", "0.6")
                await anyio.sleep(0.1)  # the server sleeps
                with anyio.move_on_after(0.2):
                    await limiter.acquire()  # sent, then cancelled before Redis answers
            # the sleep is over and the take has run: its slot is gone well before hold (4 s)
            with anyio.fail_after(2):
                while await other.zcard(limiter.key):  # noqa: ASYNC110 - Redis' state
                    await anyio.sleep(0.02)
        await limiter.aclose()
        await redis.aclose()
    finally:
        proc.kill()
        proc.wait()


def test_share_of_the_limit() -> None:
    assert share_of(20, 1.0, 2) == (10, 1.0)
    assert share_of(20, 1.0, 3) == (6, 1.0)
    assert share_of(2, 1.0, 4) == (1, 2.0)  # one request every 2 s each: 2 a second in all
    assert share_of(20, 1.0, 0) == (20, 1.0)


# One process of the fleet, until the file `stop` exists: polls its logins as fast as the
# shared limit lets it, with redis_fallback="local"; prints its warnings (stderr) and what
# it did.
FLEET = """
import json, logging, os, sys, time, anyio
from flinks_async import FlinksClient
from flinks_async.testing import demo_login_ids
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
async def main(url, redis_url, customer, seed, stop):
    ids = demo_login_ids(40, seed=int(seed))
    async with FlinksClient(customer, base_url=url, redis_url=redis_url, rate_limit=20,
                            redis_fallback="local", coordination_timeout=0.3,
                            redis_single_flight=False, poll_interval=0.001,
                            backoff_initial=0.001, poll_timeout=300) as client:
        async def pull():
            async with client.investments_many(ids, concurrency=40) as results:
                async for _ in results:
                    pass
        async with anyio.create_task_group() as tg:
            tg.start_soon(pull)
            while not os.path.exists(stop):
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        print(json.dumps({"sent": client.requests_sent}), flush=True)
anyio.run(main, *sys.argv[1:])
"""


async def test_after_a_redis_outage_the_fleet_shares_the_limit_again(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """Two processes share rate_limit=20 (redis_fallback="local"). Redis is stopped for
    about 4 s, then restarted on the same port. While it is away each process sends its
    share (10 a second), not the whole limit; once it is back they share 20 again within
    a few seconds (v0.x stayed on 20 each, 40 in all, for the rest of the run); each
    process logs one warning per transition."""
    redis_url, proc = redis_server
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    stop = tmp_path / "stop"
    async with Emulator(pending=100_000, payload_bytes=200) as emu:
        procs = [
            await anyio.open_process(
                [
                    *(sys.executable, "-c", FLEET, emu.url, redis_url, CUSTOMER),
                    str(130 + i),
                    str(stop),
                ],
                stderr=subprocess.PIPE,
            )
            for i in range(2)
        ]
        with anyio.fail_after(60):
            while emu.requests_total < 100:  # noqa: ASYNC110 - the server's count
                await anyio.sleep(0.01)
        await anyio.sleep(2)  # both at work, sharing
        proc.kill()
        proc.wait()
        down = time.monotonic()
        await anyio.sleep(4)
        restarted = start_redis(port, "--port", str(port))
        up = time.monotonic()
        await anyio.sleep(6)  # a few beats to go back, then a few seconds shared
        stop.touch()
        try:
            outs, errs = [], []
            with anyio.fail_after(90):
                for p in procs:
                    await p.wait()
                    assert p.stdout is not None and p.stderr is not None
                    outs.append(json.loads((await p.stdout.receive()).decode()))
                    errs.append((await p.stderr.receive()).decode())
        finally:
            restarted.kill()
            restarted.wait()
        arrivals = sorted(r.received_at for r in emu.requests)
    during = [t for t in arrivals if down + 1.5 <= t < up]  # a settled outage
    after = [t for t in arrivals if up + 2.5 <= t]  # back on the shared limit
    before = [t for t in arrivals if t < down]
    assert busiest_window(before, 1.0) <= 20
    assert busiest_window(during, 1.0) <= 20, "each process must take its share, not all"
    assert len(during) / (up - down - 1.5) > 12  # and the shares were used
    assert after and busiest_window(after, 1.0) <= 20, "back to one shared limit"
    assert len(after) / (after[-1] - after[0]) > 12
    for text in errs:
        lines = [line for line in text.splitlines() if line.startswith("rate limit:")]
        assert len(lines) == 2, text  # unavailable (its share), then answers again
        assert "its share of 20 among the 2 process(es)" in lines[0]
        assert "back to the shared limit" in lines[1]
    assert all(o["sent"] > 0 for o in outs)


async def test_a_process_that_only_shares_the_limit_keeps_no_answer_in_redis(
    redis_server: tuple[str, subprocess.Popen[bytes]], login_ids: list[str]
) -> None:
    """redis_single_flight=False: the rate limit is shared, no answer is copied into
    Redis; redis_rate_limit=False: the reverse."""
    redis_url, _ = redis_server
    import redis.asyncio as aioredis

    async with Emulator(pending=1, payload_bytes=500) as emu:
        async with fast_client(
            emu, redis_url=redis_url, rate_limit=50, redis_single_flight=False
        ) as client:
            async with client.investments_many(login_ids[:5]) as results:
                assert all([r.ok async for r in results])
            async with aioredis.Redis.from_url(redis_url, decode_responses=True) as r:
                keys = sorted(await r.keys("*"))
                assert not [k for k in keys if ":flight:" in k], keys
                assert f"flinks-async:{CUSTOMER}:rate-limit" in keys
                await r.flushall()
        async with fast_client(
            emu, redis_url=redis_url, rate_limit=50, redis_rate_limit=False
        ) as client:
            async with client.investments_many(login_ids[5:10]) as results:
                assert all([r.ok async for r in results])
            async with aioredis.Redis.from_url(redis_url, decode_responses=True) as r:
                keys = sorted(await r.keys("*"))
                assert [k for k in keys if k.endswith(":result")]
                assert not [k for k in keys if "rate-limit" in k or "peers" in k], keys


async def test_the_client_repr_and_limiter_repr_show_no_password() -> None:
    async with FlinksClient(
        CUSTOMER, rate_limit=5, redis_url="redis://:pw-s3cret@127.0.0.1:1/0"
    ) as client:
        assert "pw-s3cret" not in repr(client)
        assert "pw-s3cret" not in repr(client._coordination.limiter)


def test_the_fallback_can_be_chosen_from_the_environment() -> None:
    from flinks_async._config import Settings

    env = {"FLINKS_CUSTOMER_ID": CUSTOMER, "FLINKS_REDIS_FALLBACK": "local"}
    assert Settings.build(env=env).redis_fallback == "local"
    assert Settings.build(env={"FLINKS_CUSTOMER_ID": CUSTOMER}).redis_fallback == "error"
