"""The shared rate limit on a real redis-server, across real OS processes.

Each test starts its own ``redis-server`` on a free port (the Debian package; ``.ci/run``
installs it when missing) and stops it. The emulator runs in this process and records when
every request arrived: the limit is checked as Flinks would count it.
"""

from __future__ import annotations

import collections
import logging
import os
import pathlib
import subprocess
import sys
import threading
import time
from typing import Any

import anyio
import pytest

from flinks_async import CoordinationError, FlinksClient
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import CUSTOMER, fast_client, free_port, needs_redis, start_redis

pytestmark = pytest.mark.anyio

# One process of the fleet: pulls its logins as hard as it can under the shared limit.
WORKER = """
import sys, anyio
from flinks_async import FlinksClient
async def main(url, redis_url, customer, first, n):
    from flinks_async.testing import demo_login_ids
    ids = demo_login_ids(int(first) + int(n), seed=90)[int(first):]
    async with FlinksClient(customer, base_url=url, redis_url=redis_url, rate_limit=40,
                            poll_interval=0.001, backoff_initial=0.001) as client:
        async with client.investments_many(ids, concurrency=50) as results:
            ok = sum([r.ok async for r in results])
    print(ok)
anyio.run(main, *sys.argv[1:])
"""


# One process asking for the given logins (the same ones as its peers), printing how many
# ended ok.
ASKER = """
import sys, anyio
from flinks_async import FlinksClient
from flinks_async.testing import demo_login_ids
async def main(url, redis_url, customer, n, seed):
    ids = demo_login_ids(int(n), seed=int(seed))
    async with FlinksClient(customer, base_url=url, redis_url=redis_url,
                            poll_interval=0.02, poll_timeout=60) as client:
        async with client.investments_many(ids, concurrency=50) as results:
            ok = sum([r.ok async for r in results])
    print(ok, flush=True)
anyio.run(main, *sys.argv[1:])
"""


@needs_redis
async def test_four_processes_share_one_limit_as_the_server_counts_it(
    redis_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """(a) 4 processes at rate_limit=40, each with 50 logins in flight and 1 ms polls: no
    one-second window at the emulator holds more than 40 requests, and every process
    gets its share."""
    redis_url, _ = redis_server
    async with Emulator(pending=3, payload_bytes=500) as emu:
        procs = [
            await anyio.open_process(
                [sys.executable, "-c", WORKER, emu.url, redis_url, CUSTOMER, str(i * 30), "30"]
            )
            for i in range(4)
        ]
        outs = []
        with anyio.fail_after(60):
            for p in procs:
                await p.wait()
                assert p.stdout is not None
                outs.append((await p.stdout.receive()).decode().strip())
        assert outs == ["30"] * 4  # every login of every process
        times = sorted(r.received_at for r in emu.requests)
        busiest = emu.max_requests_in_window(1.0)
        ids = demo_login_ids(120, seed=90)
        owner = {login.lower(): n // 30 for n, login in enumerate(ids)}
        by_process = [
            [r.received_at for r in emu.requests if r.login_id and owner[r.login_id.lower()] == p]
            for p in range(4)
        ]
        # while all four were at work (they start a little apart): each one's arrivals
        start, end = max(t[0] for t in by_process), min(t[-1] for t in by_process)
        shares = [sum(start <= x <= end for x in t) for t in by_process]
    # 4 x 30 logins x (Authorize + 3 x 202 + 200) = 600 requests, at most 40 a second
    assert len(times) == 600
    assert busiest <= 40
    span = times[-1] - times[0]
    assert len(times) / span > 30  # and the limit was used, not just respected
    # no process starves: each had at least 10% of the arrivals while all four were busy
    assert all(n > 0.10 * sum(shares) for n in shares), shares


@needs_redis
async def test_three_processes_asking_for_the_same_logins_authorize_each_once(
    redis_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """(b) 3 processes ask for the same 50 logins at once: 50 Authorize calls in all, and
    every process gets all 50 results."""
    redis_url, _ = redis_server
    async with Emulator(pending=5, payload_bytes=2000) as emu:
        procs = [
            await anyio.open_process(
                [sys.executable, "-c", ASKER, emu.url, redis_url, CUSTOMER, "50", "93"]
            )
            for _ in range(3)
        ]
        outs = []
        with anyio.fail_after(60):
            for p in procs:
                await p.wait()
                assert p.stdout is not None
                outs.append((await p.stdout.receive()).decode().strip())
        assert outs == ["50"] * 3
        assert emu.counts["Authorize"] == 50
        assert emu.counts["Investments"] == 50 * 6  # 5 pending + the 200, once per login


@needs_redis
async def test_a_waiter_takes_over_when_the_owner_is_killed(
    redis_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """(c) The process polling a login is killed with -9 mid-poll; another process waiting
    for the same login takes the lapsed lease over (within the 5 s lease) and finishes,
    polling the owner's session: the same RequestId, one Authorize (before: two)."""
    import redis.asyncio as aioredis

    redis_url, _ = redis_server
    login = demo_login_ids(1, seed=94)[0]
    async with Emulator(pending=150) as emu, aioredis.Redis.from_url(redis_url) as r:
        cmd = [sys.executable, "-c", ASKER, emu.url, redis_url, CUSTOMER, "1", "94"]
        owner = await anyio.open_process(cmd)
        with anyio.fail_after(20):
            while emu.counts["Investments"] < 20:  # noqa: ASYNC110 - the server's count
                await anyio.sleep(0.01)
        waiter = await anyio.open_process(cmd)
        with anyio.fail_after(20):  # the owner renewed its lease, recording its RequestId
            while not await r.keys("flinks-async:*:flight:*:rid"):  # noqa: ASYNC110
                await anyio.sleep(0.05)
        owner.kill()  # SIGKILL: no cleanup, the lease is left to lapse
        await owner.wait()
        polls_at_kill = emu.counts["Investments"]
        with anyio.fail_after(30):
            await waiter.wait()
        assert waiter.stdout is not None
        assert (await waiter.stdout.receive()).decode().strip() == "1"
        assert emu.counts["Authorize"] == 1  # the waiter polled the owner's session
        assert emu.counts["Investments"] > polls_at_kill
        assert len({q.request_id for q in emu.requests if q.endpoint == "Investments"}) == 1
        assert login.lower() in {q.login_id.lower() for q in emu.requests if q.login_id}


@needs_redis
async def test_one_process_under_the_shared_limit(
    redis_server: tuple[str, subprocess.Popen[bytes]], login_ids: list[str]
) -> None:
    redis_url, _ = redis_server
    async with Emulator(pending=1, payload_bytes=500) as emu:
        async with fast_client(emu, redis_url=redis_url, rate_limit=20) as client:
            async with client.investments_many(login_ids[:15], concurrency=15) as results:
                assert all([r.ok async for r in results])
        assert emu.max_requests_in_window(1.0) <= 20
    import redis.asyncio as aioredis

    async with aioredis.Redis.from_url(redis_url, decode_responses=True) as r:
        keys = [str(k) for k in await r.keys("*")]
        assert keys and all(k.startswith(f"flinks-async:{CUSTOMER}:") for k in keys)
        assert not [k for k in keys if any(i.lower() in k.lower() for i in login_ids)]
        shared = [k for k in keys if k.endswith(":result")]
        assert len(shared) == 15  # each login's 200, shared for a short while only
        ttls = [await r.pttl(k) for k in shared]
        assert all(0 < t <= 15_000 for t in ttls)


@needs_redis
async def test_redis_dying_mid_run_is_a_typed_error_at_once(
    redis_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """(d) Redis killed while logins are in flight: with the default "error", the fan-out
    stops with CoordinationError within the coordination timeout, nothing hangs."""
    redis_url, proc = redis_server
    ids = demo_login_ids(40, seed=91)
    async with Emulator(pending=50, payload_bytes=500) as emu:
        async with fast_client(
            emu, redis_url=redis_url, rate_limit=100, coordination_timeout=0.5, poll_interval=0.01
        ) as client:

            async def pull() -> None:
                async with client.investments_many(ids, concurrency=40) as results:
                    async for _ in results:
                        pass

            async def kill_redis() -> None:
                while emu.requests_total < 60:  # noqa: ASYNC110 - the server's count
                    await anyio.sleep(0.005)
                proc.kill()
                killed.append(time.monotonic())

            killed: list[float] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_redis)
                with anyio.fail_after(10), pytest.raises(CoordinationError) as info:
                    await pull()
            assert time.monotonic() - killed[0] < 5  # about coordination_timeout, no hang
            assert client.in_flight_requests == 0 and client.active_polls == 0
    assert "127.0.0.1" in str(info.value) and "redis://" in str(info.value)


@needs_redis
async def test_redis_dying_with_local_fallback_finishes_the_pull(
    redis_server: tuple[str, subprocess.Popen[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    redis_url, proc = redis_server
    ids = demo_login_ids(30, seed=92)
    async with Emulator(pending=20, payload_bytes=500) as emu:
        async with fast_client(
            emu,
            redis_url=redis_url,
            rate_limit=200,
            redis_fallback="local",
            coordination_timeout=0.5,
            poll_interval=0.01,
        ) as client:
            with caplog.at_level(logging.WARNING, logger="flinks_async"):
                async with client.investments_many(ids, concurrency=30) as results:
                    got = 0
                    async for r in results:
                        assert r.ok
                        got += 1
                        if got == 1:
                            proc.kill()  # Redis dies mid-run
            assert got == 30
    # one warning per transition and part, never one per call
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if w.startswith("rate limit:")]) == 1, warnings
    assert "its share of 200 among the 1 process(es)" in caplog.text
    assert len([w for w in warnings if w.startswith("single-flight:")]) <= 1, warnings


async def test_an_unreachable_redis_is_a_typed_error_and_never_a_hang() -> None:
    port = free_port()  # nothing listens there
    async with Emulator(pending=0) as emu:
        async with FlinksClient(
            CUSTOMER,
            base_url=emu.url,
            rate_limit=10,
            redis_url=f"redis://user:s3cret-pw@127.0.0.1:{port}/0",
            coordination_timeout=0.5,
        ) as client:
            with anyio.fail_after(5), pytest.raises(CoordinationError) as info:
                await client.investments(demo_login_ids(1)[0])
            assert "s3cret-pw" not in repr(client)
    assert "s3cret-pw" not in str(info.value) and f"127.0.0.1:{port}" in str(info.value)
    assert emu.requests_total == 0  # nothing reached Flinks unaccounted


def test_import_does_not_import_redis() -> None:
    code = "import sys, flinks_async; sys.exit('redis' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=os.environ.copy()).returncode == 0


@needs_redis
async def test_a_password_and_tls_in_the_url_work_and_are_never_shown(
    tmp_path: pathlib.Path, login_ids: list[str]
) -> None:
    """rediss:// with a password, against a redis-server that demands both (a CA made for
    the test with trustme); a wrong password is a CoordinationError that names no secret."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    files = {"cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem", "ca": tmp_path / "ca.pem"}
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    port = free_port()
    proc = start_redis(
        port,
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(files["cert"]),
        "--tls-key-file", str(files["key"]),
        "--tls-ca-cert-file", str(files["ca"]),
        "--tls-auth-clients", "no",
        "--requirepass", "s3cret-pw",
    )  # fmt: skip
    try:
        url = f"rediss://:s3cret-pw@127.0.0.1:{port}/0?ssl_ca_certs={files['ca']}"
        async with Emulator(pending=1) as emu:
            async with fast_client(emu, redis_url=url, rate_limit=50) as client:
                assert "s3cret-pw" not in repr(client)
                async with client.investments_many(login_ids[:5]) as results:
                    assert all([r.ok async for r in results])
            wrong = url.replace("s3cret-pw", "wrong-pw")
            async with fast_client(emu, redis_url=wrong, rate_limit=50) as client:
                with anyio.fail_after(10), pytest.raises(CoordinationError) as info:
                    await client.investments(login_ids[5])
        assert "pw" not in str(info.value) and "ssl_ca_certs" not in str(info.value)
        assert f"rediss://127.0.0.1:{port}/0" in str(info.value)
    finally:
        proc.kill()
        proc.wait()


_END = "flinks-async-test-end"


def _client_commands(redis_url: str, ready: threading.Event, seen: list[str]) -> None:
    """Every command a client sends to the redis-server (MONITOR: what the server ran,
    a script's own commands excepted), as ``NAME`` or ``EVALSHA <sha>``, from ``ready``
    until ``ECHO`` of :data:`_END` (MONITOR keeps the server's order: nothing before it is
    missed, however far behind this thread runs)."""
    import redis

    server: Any = redis.Redis.from_url(redis_url)
    with server.monitor() as monitor:  # MONITOR sent and answered: nothing is missed now
        ready.set()
        while True:
            info = monitor.next_command()
            if _END in info["command"]:
                return
            if info["client_type"] == "lua":
                continue
            words = info["command"].split()
            name = words[0].upper()
            seen.append(f"EVALSHA {words[1]}" if name == "EVALSHA" else name)


@needs_redis
async def test_a_login_costs_a_few_redis_round_trips_counted_at_the_server(
    redis_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """With the shared limit and single-flight, a login of Authorize, one 202 and the 200
    costs the client at most 8 commands at the redis-server: at most a take per request
    (one script takes for every caller queued at the time, carrying the give-backs of
    earlier answers), one script to arrive at the flight and one to store its outcome, and
    a give-back of its own for each answer no take carried in time (it was 11: the flight
    sent GET, SET NX, GET, SET, then a script, each request its own take, and every answer
    its own give-back). The heartbeat (one script a second) is not counted."""
    import hashlib

    from flinks_async._redis import _scripts

    redis_url, _ = redis_server
    beat = hashlib.sha1(_scripts.KEEP.encode()).hexdigest()
    ready, seen = threading.Event(), list[str]()
    watcher = threading.Thread(target=_client_commands, args=(redis_url, ready, seen))
    watcher.start()
    assert await anyio.to_thread.run_sync(ready.wait, 30)
    ids = demo_login_ids(60, seed=97)
    try:
        async with (
            Emulator(pending=1, payload_bytes=500) as emu,
            FlinksClient(
                CUSTOMER,
                base_url=emu.url,
                redis_url=redis_url,
                rate_limit=1000,
                poll_interval=0.005,
            ) as client,
            client.investments_many(ids, concurrency=4) as results,
        ):
            assert sum([r.ok async for r in results]) == len(ids)
        assert emu.counts["Investments"] == 2 * len(ids)  # one 202 and the 200 each
    finally:
        import redis

        redis.Redis.from_url(redis_url).echo(_END)  # the watcher ends once it reads this
        await anyio.to_thread.run_sync(watcher.join, 60)
    assert not watcher.is_alive()
    per_login = [c for c in seen if c.startswith(("EVALSHA", "GET", "SET", "DEL"))]
    per_login = [c for c in per_login if c != f"EVALSHA {beat}"]
    assert 2 * len(ids) <= len(per_login) <= 8 * len(ids), collections.Counter(seen)
