"""The queue commands tell the truth under faults: ``purge`` while workers pull, ``status``
after a worker is killed with -9 and after the queue's redis-server restarts. Real arq
workers as OS processes, a real redis-server, the emulator over loopback."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import anyio
import pytest

from flinks_async.testing import Emulator, demo_login_ids

from .conftest import CUSTOMER, free_port, needs_redis, start_redis
from .test_distributed import _spawn_worker as _worker
from .test_distributed import _stop

pytestmark = [pytest.mark.anyio, needs_redis]
CLI = [sys.executable, "-m", "flinks_async"]
HEARTBEAT = 0.2  # FLINKS_WORKER_HEARTBEAT: a worker is alive for 5 beats after its last
STATUS = re.compile(
    r"job nightly: (\d+) logins, (\d+) done, (\d+) failed, (\d+) pending, (\d+) in flight; "
    r"(\d+) workers alive"
)


def _env(emu: Emulator, concurrency: int) -> dict[str, str]:
    return {
        **os.environ,
        "FLINKS_CUSTOMER_ID": CUSTOMER,
        "FLINKS_BASE_URL": emu.url,
        "FLINKS_POLL_INTERVAL": "0.05",
        "FLINKS_POLL_TIMEOUT": "300",  # far beyond what a login needs: not the subject
        "FLINKS_JOB_BACKOFF": "0.2",
        "FLINKS_JOB_SLICE": "1",
        "FLINKS_WORKER_CONCURRENCY": str(concurrency),
        "FLINKS_WORKER_HEARTBEAT": str(HEARTBEAT),
    }


async def _enqueue(
    redis_url: str,
    ids: list[str],
    tmp_path: pathlib.Path,
    env: dict[str, str],
    job: str = "nightly",
) -> None:
    ids_file = tmp_path / f"{job}.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    cmd = [*CLI, "enqueue", "--redis", redis_url, "--job", job, "--login-ids", str(ids_file)]
    done = await anyio.run_process(cmd, env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()


async def _status(redis_url: str) -> tuple[int, ...]:
    """``flinks-async status`` as a user runs it: (logins, done, failed, pending, in
    flight, workers alive)."""
    done = await anyio.run_process(
        [*CLI, "status", "--redis", redis_url, "--job", "nightly"], check=False
    )
    text = done.stdout.decode()
    found = STATUS.search(text)
    assert done.returncode == 0 and found, (text, done.stderr.decode())
    return tuple(int(n) for n in found.groups())


async def _keys_naming(redis_url: str, job: str) -> list[str]:
    """Every key of the redis-server whose name, or a member of a sorted set it holds,
    names ``job`` (arq's queue and abort set hold job ids as members)."""
    import redis.asyncio as aioredis

    found = []
    async with aioredis.Redis.from_url(redis_url) as r:
        async for name in r.scan_iter(count=1000):
            if job.encode() in name:
                found.append(f"{name.decode()} (ttl {await r.pttl(name)} ms)")
            elif await r.type(name) == b"zset":
                found += [
                    f"{name.decode()} holds {m.decode()}"
                    async for m, _ in r.zscan_iter(name, match=f"{job}:*")
                ]
    return found


async def test_purge_mid_pull_stops_the_job_and_leaves_nothing_that_names_it(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """Two workers hold 20 of 60 logins that stay pending for a while; `purge` runs. It
    says how many it stopped and dropped; once it returns, no key of the redis-server names
    the job (arq's retry counts, marks, definitions and queue entries included), the
    stopped logins are polled no more (at most the one request each had on its way), and
    the same workers then pull another job to the end. (v0.x: the workers polled on to the
    end of their slice, wrote the job's state back, and arq:retry keys stayed 24.5 h.)"""
    redis_url, _ = redis_server
    ids = demo_login_ids(60, seed=501)
    async with Emulator(pending=400, payload_bytes=300) as emu:
        # slices far longer than the test: the 20 logins started are in progress throughout,
        # and a worker that dropped them only at its next slice would poll on for 30 s
        env = {**_env(emu, concurrency=10), "FLINKS_JOB_SLICE": "30"}
        await _enqueue(redis_url, ids, tmp_path, env)
        workers = [_worker(redis_url, env, tmp_path / f"w{i}.log") for i in range(2)]
        try:
            with anyio.fail_after(60):
                while emu.counts["Authorize"] < 20 or emu.counts["Investments"] < 20 * 30:  # noqa: ASYNC110 - the server's count
                    await anyio.sleep(0.02)
            purged = await anyio.run_process(
                [*CLI, "purge", "--redis", redis_url, "--job", "nightly"], env=env, check=False
            )
            at_purge = sum(1 for r in list(emu.requests) if r.login_id in ids)
            left = await _keys_naming(redis_url, "nightly")
            # the same workers pull another job to the end: whatever they had of the
            # purged one is behind them by then
            after = demo_login_ids(5, seed=502)
            for login in after:
                emu.set_login(login, pending=1)
            await _enqueue(redis_url, after, tmp_path, env, job="after")
            collect = [*CLI, "collect", "--redis", redis_url, "--job", "after", "--out", "-"]
            with anyio.fail_after(60):
                while True:
                    got = await anyio.run_process(collect, env=env, check=False)
                    if got.returncode == 0:
                        break
                    await anyio.sleep(0.2)
            assert len(got.stdout.splitlines()) == 5
            polled_after = sum(1 for r in list(emu.requests) if r.login_id in ids) - at_purge
            assert all(w.poll() is None for w in workers)  # still running
        finally:
            _stop(workers)
    assert left == [], left
    assert await _keys_naming(redis_url, "nightly") == []
    assert polled_after <= 20, polled_after  # one request on its way per stopped login
    report = purged.stderr.decode()
    assert purged.returncode == 0, report
    found = re.search(r"purged job nightly: (\d+) logins in progress stopped, (\d+) queued", report)
    print(report)
    assert found and (int(found[1]), int(found[2])) == (20, 40), report
    assert "nothing of it is left on this Redis" in report
    logs = "".join((tmp_path / f"w{i}.log").read_text() for i in range(2))
    assert "Traceback" not in logs, logs


async def test_status_drops_a_killed_worker_within_one_heartbeat_ttl(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """Two workers at concurrency 5, both full; one is killed with -9. Every `status`
    shows at most 5 in flight per live worker, and one started more than 5 heartbeats
    (FLINKS_WORKER_HEARTBEAT=0.2: 1 s) after the kill no longer counts the dead worker
    alive. (v0.x: alive for up to 3 progress periods, 90 s by default, and its logins
    counted in flight until arq's marks lapsed.)"""
    redis_url, _ = redis_server
    ids = demo_login_ids(40, seed=503)
    async with Emulator(pending=400, payload_bytes=300) as emu:
        env = _env(emu, concurrency=5)
        await _enqueue(redis_url, ids, tmp_path, env)
        workers = [_worker(redis_url, env, tmp_path / f"w{i}.log") for i in range(2)]
        seen: list[tuple[int, ...]] = []
        try:
            with anyio.fail_after(60):
                while not seen or seen[-1][4:] != (10, 2):
                    seen.append(await _status(redis_url))
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            killed = time.monotonic()
            with anyio.fail_after(60):
                while True:
                    asked = time.monotonic()
                    seen.append(now := await _status(redis_url))
                    if asked > killed + 5 * HEARTBEAT:
                        assert now[5] <= 1, now  # the dead one is gone
                        if now[5] == 1:
                            break
        finally:
            _stop(workers)
    assert all(s[4] <= 5 * s[5] for s in seen), seen  # never more than the live can hold


async def test_status_counts_survive_the_queues_redis_restarting(tmp_path: pathlib.Path) -> None:
    """Two workers at concurrency 5 pull 30 logins; the queue's redis-server (append-only
    file on) is killed and restarted mid-pull. Every `status` shows at most 10 in flight
    and 2 workers alive, and each worker's counts, logged when it stops, add up to the
    job's 30 logins. (v0.x: arq's marks of the logins cut off by the restart were counted
    in flight with the new ones, up to twice what the workers hold, and each worker's
    counts restarted from 0 when it reconnected.)"""
    port = free_port()
    opts = ("--port", str(port), "--dir", str(tmp_path), "--appendonly", "yes")
    redis = start_redis(port, *opts, "--appendfsync", "always")
    redis_url = f"redis://127.0.0.1:{port}/0"
    ids = demo_login_ids(30, seed=504)
    seen: list[tuple[int, ...]] = []
    try:
        async with Emulator(pending=60, payload_bytes=300) as emu:
            env = _env(emu, concurrency=5)
            await _enqueue(redis_url, ids, tmp_path, env)
            workers = [_worker(redis_url, env, tmp_path / f"w{i}.log") for i in range(2)]
            try:
                with anyio.fail_after(90):
                    while not seen or seen[-1][1] + seen[-1][2] < 10:  # a first wave ended
                        seen.append(await _status(redis_url))
                redis.kill()
                redis.wait()
                await anyio.sleep(1)  # the outage
                redis = start_redis(port, *opts, "--appendfsync", "always")
                with anyio.fail_after(120):
                    while seen[-1][3] > 0:  # until nothing is pending
                        seen.append(await _status(redis_url))
                assert all(w.poll() is None for w in workers)  # still running
            finally:
                _stop(workers)
    finally:
        redis.kill()
        redis.wait()
    most = max(s[4] for s in seen), max(s[5] for s in seen)
    assert most[0] <= 10 and most[1] <= 2, (most, seen)
    assert seen[-1][:4] == (30, 30, 0, 0), seen[-1]
    logs = [(tmp_path / f"w{i}.log").read_text() for i in range(2)]
    assert sum(log.count("lost the queue's Redis") for log in logs) >= 1, logs
    totals = []
    for log in logs:
        found = re.findall(r"stopped: (\d+) done, (\d+) failed, 0 in flight", log)
        assert len(found) == 1, log
        totals.append(int(found[0][0]) + int(found[0][1]))
    assert sum(totals) == 30, (totals, logs)


def test_purge_still_returns_the_keys_deleted_as_an_int() -> None:
    """``queue.purge()`` returned an int (keys deleted); it now says more, and code that
    used the count keeps working."""
    from flinks_async.queue import Purged

    purged = Purged(83, queued=40, stopped=20)
    assert isinstance(purged, int) and purged == 83 and purged + 1 == 84 and str(purged) == "83"
    assert (purged.keys, purged.queued, purged.stopped) == (83, 40, 20)
    assert repr(purged) == "Purged(keys=83, queued=40, stopped=20)"
