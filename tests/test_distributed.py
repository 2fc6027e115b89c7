"""Distributed pulls on arq with a real redis-server, workers as real OS processes."""

from __future__ import annotations

import collections
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest

from flinks_async.testing import Emulator, demo_login_ids

from .conftest import CUSTOMER, free_port, needs_redis, start_redis

pytestmark = [pytest.mark.anyio, needs_redis]
CLI = [sys.executable, "-m", "flinks_async"]


def _env(emu: Emulator) -> dict[str, str]:
    return {
        **os.environ,
        "FLINKS_CUSTOMER_ID": CUSTOMER,
        "FLINKS_BASE_URL": emu.url,
        "FLINKS_POLL_INTERVAL": "0.01",
        "FLINKS_POLL_TIMEOUT": "120",  # far beyond what a login needs: not the subject
        "FLINKS_JOB_BACKOFF": "0.2",
        "FLINKS_JOB_SLICE": "1",  # a killed worker's logins resume within max(2, 1+5)+10 s
        "FLINKS_WORKER_CONCURRENCY": "50",
    }


async def _collect(redis_url: str, out: pathlib.Path) -> tuple[int, str]:
    proc = await anyio.run_process(
        [
            *CLI,
            "collect",
            "--redis",
            redis_url,
            "--job",
            "nightly",
            "--out",
            str(out),
            "--overwrite",
        ],
        check=False,
    )
    return proc.returncode, proc.stderr.decode()


async def test_a_distributed_pull_survives_a_killed_worker(
    redis_server: tuple[str, subprocess.Popen[bytes]],
    tmp_path: pathlib.Path,
) -> None:
    """(e) 3,000 logins, 3 workers, faults injected; one worker killed with -9 mid-run and
    another started: every login ends in exactly one line, and enqueueing twice pulls
    nothing twice."""
    redis_url, _ = redis_server
    ids = demo_login_ids(3000, seed=95)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    out = tmp_path / "out.jsonl"
    rates = {"RETRY_LATER@data": 0.1, "http_503": 0.05, "INVALID_LOGIN@data": 0.02}
    async with Emulator(pending=2, payload_bytes=1000, fault_rates=rates, seed=3) as emu:
        env = _env(emu)
        for _ in range(2):  # the second time: nothing new
            done = await anyio.run_process(_enqueue_cmd(redis_url, ids_file), env=env, check=False)
            assert done.returncode == 0, done.stderr.decode()
        assert "enqueued 0 logins for job nightly (3000 already known)" in done.stderr.decode()

        def worker() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [*CLI, "worker", "--redis", redis_url],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        workers = [worker() for _ in range(3)]
        try:
            with anyio.fail_after(30):
                while emu.counts["Authorize"] < 300:  # noqa: ASYNC110 - the server's count
                    await anyio.sleep(0.02)
            workers[0].send_signal(signal.SIGKILL)  # mid-run: no cleanup at all
            workers[0].wait()
            workers.append(worker())  # a replacement
            with anyio.fail_after(90):
                code, report = await _collect_when_done(redis_url, out)
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(timeout=30)
    lines = [msgspec.json.decode(line) for line in out.read_bytes().splitlines()]
    assert sorted(line["login_id"] for line in lines) == sorted(ids)  # each exactly once
    failed = [line for line in lines if not line["ok"]]
    assert failed and all(line["error"].get("flinks_code") == "INVALID_LOGIN" for line in failed)
    assert f"3000 logins written to {out} ({len(failed)} failed), 0 pending" in report
    assert code == 1  # some logins failed: their lines say why


async def _collect_when_done(redis_url: str, out: pathlib.Path) -> tuple[int, str]:
    """Collect every half second until nothing is pending (the caller bounds the time)."""
    while True:
        code, report = await _collect(redis_url, out)
        if report.rstrip().endswith(" 0 pending"):
            return code, report
        await anyio.sleep(0.5)


def _enqueue_cmd(redis_url: str, ids_file: pathlib.Path, *extra: str) -> list[str]:
    return [
        *CLI,
        "enqueue",
        "--redis",
        redis_url,
        "--job",
        "nightly",
        "--login-ids",
        str(ids_file),
        *extra,
    ]


def _spawn_worker(
    redis_url: str, env: dict[str, str], log: pathlib.Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as f:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            [*CLI, "worker", "--redis", redis_url], env=env, stdout=subprocess.DEVNULL, stderr=f
        )


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        w.wait(timeout=30)


async def test_a_killed_workers_logins_resume_their_session_within_a_minute(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """60 logins that stay pending for a while are being polled by one worker when it is
    killed with -9; a second worker resumes them. Counted at the emulator: every login was
    authorized once (at most twice), its polls resumed within 60 s of the kill (v0.x:
    job_timeout + 10 s, 31 minutes by default, then a new Authorize for each), and each
    ends in exactly one line."""
    redis_url, _ = redis_server
    ids = demo_login_ids(60, seed=150)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    async with Emulator(pending=400, payload_bytes=500) as emu:
        env = _env(emu)
        env["FLINKS_POLL_INTERVAL"] = "0.05"  # 400 polls: 20 s of polling per login
        done = await anyio.run_process(_enqueue_cmd(redis_url, ids_file), env=env, check=False)
        assert done.returncode == 0, done.stderr.decode()
        first = _spawn_worker(redis_url, env, tmp_path / "w1.log")
        workers = [first]
        try:
            with anyio.fail_after(60):
                while emu.counts["Investments"] < 60 * 20:  # noqa: ASYNC110 - the server's count
                    await anyio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            first.wait()
            killed = time.monotonic()
            seen = emu.requests_total
            workers.append(_spawn_worker(redis_url, env, tmp_path / "w2.log"))
            out = tmp_path / "out.jsonl"
            with anyio.fail_after(120):
                code, _ = await _collect_when_done(redis_url, out)
        finally:
            _stop(workers)
        # requests already on the wire when the worker died land within milliseconds
        after = [r for r in list(emu.requests)[seen:] if r.received_at > killed + 0.5]
        finished = {
            r.login_id
            for r in list(emu.requests)[:seen]
            if r.endpoint == "Investments" and r.status == 200
        }
        first_after: dict[str, float] = {}
        for r in after:
            if r.login_id and r.login_id not in finished:
                first_after.setdefault(r.login_id, r.received_at)
        # the last of the unfinished logins to be polled again: those the dead worker held
        resumed = max(first_after.values()) - killed
        authorizes = collections.Counter(
            r.login_id.lower() for r in emu.requests if r.endpoint == "Authorize" and r.login_id
        )
    per_login = sorted(set(authorizes.values()))
    print(
        f"{len(first_after)} unfinished logins, the last resumed {resumed:.1f}s after the "
        f"kill; Authorize per login: {per_login}"
    )
    assert resumed < 60
    assert set(authorizes) == {i.lower() for i in ids} and max(authorizes.values()) <= 2
    lines = [msgspec.json.decode(line) for line in out.read_bytes().splitlines()]
    assert sorted(line["login_id"] for line in lines) == sorted(ids)
    assert all(line["ok"] for line in lines) and code == 0


async def test_transient_trouble_is_retried_and_only_final_answers_are_lines(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """Logins whose Authorize answers 503 more often than the client retries (4 times)
    go back on the queue and end ok; an INVALID_LOGIN is a failed line at once; a worker
    whose coordination Redis is down refuses to start (exit 2, one line) and pulls
    nothing."""
    redis_url, _ = redis_server
    ids = demo_login_ids(12, seed=151)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    async with Emulator(pending=1, payload_bytes=300) as emu:
        for login in ids[:5]:
            emu.set_login(login, pending=1, faults=["http_503@authorize"] * 5)
        emu.set_login(ids[5], faults=["INVALID_LOGIN@data"])
        env = {**_env(emu), "FLINKS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
        refused = await anyio.run_process(
            [*CLI, "worker", "--redis", redis_url], env=env, check=False
        )
        assert refused.returncode == 2
        assert refused.stderr.decode().count("\n") <= 2, refused.stderr.decode()
        assert "takes no job" in refused.stderr.decode() and emu.requests_total == 0
        env = _env(emu)
        done = await anyio.run_process(_enqueue_cmd(redis_url, ids_file), env=env, check=False)
        assert done.returncode == 0, done.stderr.decode()
        burst = await anyio.run_process(
            [*CLI, "worker", "--redis", redis_url, "--burst"], env=env, check=False
        )
        assert burst.returncode == 0, burst.stderr.decode()
        code, report = await _collect(redis_url, tmp_path / "out.jsonl")
    lines = {
        line["login_id"]: line
        for line in map(msgspec.json.decode, (tmp_path / "out.jsonl").read_bytes().splitlines())
    }
    assert set(lines) == set(ids)
    assert [lines[i]["ok"] for i in ids[:5]] == [True] * 5  # retried, not failed
    assert lines[ids[5]]["error"]["flinks_code"] == "INVALID_LOGIN"
    assert "12 logins written" in report and "(1 failed), 0 pending" in report and code == 1


async def test_enqueue_never_calls_a_login_known_and_then_pulls_it(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """Enqueue, pull, enqueue the same ids again: "0 new", and the emulator sees no second
    pull; --retry-failed re-queues only the failed login; blank ids of an async source are
    skipped; every key the job made has a TTL, no queue record holds a login id, and
    collect --delete leaves nothing behind."""
    redis_url, _ = redis_server
    import redis.asyncio as aioredis

    from flinks_async.queue import enqueue

    ids = demo_login_ids(10, seed=152)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    async with Emulator(pending=1, payload_bytes=300) as emu:
        emu.set_login(ids[0], faults=["INVALID_LOGIN@data"])
        env = _env(emu)
        ttl = ["--ttl", "3600"]
        first = await anyio.run_process(_enqueue_cmd(redis_url, ids_file, *ttl), env=env)
        assert "enqueued 10 logins for job nightly (0 already known)" in first.stderr.decode()
        await anyio.run_process([*CLI, "worker", "--redis", redis_url, "--burst"], env=env)
        pulled = emu.counts["Authorize"]
        again = await anyio.run_process(_enqueue_cmd(redis_url, ids_file, *ttl), env=env)
        assert "enqueued 0 logins for job nightly (10 already known)" in again.stderr.decode()
        await anyio.run_process([*CLI, "worker", "--redis", redis_url, "--burst"], env=env)
        assert emu.counts["Authorize"] == pulled == 10  # nothing pulled twice
        retry = await anyio.run_process(
            [*CLI, "enqueue", "--redis", redis_url, "--job", "nightly", "--retry-failed"],
            env=env,
        )
        assert "re-queued 1 failed logins" in retry.stderr.decode()
        await anyio.run_process([*CLI, "worker", "--redis", redis_url, "--burst"], env=env)
        assert emu.counts["Authorize"] == 11  # only the failed one, once more

        async def with_blanks() -> AsyncIterator[str]:
            for login in ["", "  ", *demo_login_ids(3, seed=153), "\t"]:
                yield login

        assert await enqueue(redis_url, with_blanks(), job="other", ttl=3600) == (3, 0)
        async with aioredis.Redis.from_url(redis_url) as r:
            keys = [k async for k in r.scan_iter(count=1000)]
            ttls = {k.decode(): await r.pttl(k) for k in keys}
            jobs = {k: t for k, t in ttls.items() if k.startswith("flinks-async:job:")}
            assert jobs and all(0 < t <= 3600 * 1000 for t in jobs.values()), jobs
            # everything else expires too, but the queue itself (a sorted set of job ids,
            # gone once empty)
            assert all(t > 0 for k, t in ttls.items() if k != "flinks-async"), ttls
            for k in keys:  # no record of the queue holds a login id: a hash of it
                if k.startswith((b"arq:", b"flinks-async:health")) or k == b"flinks-async":
                    dump = await r.dump(k) or b""
                    assert not [i for i in ids if i.encode() in dump], k
        collect = [*CLI, "collect", "--redis", redis_url, "--job", "nightly", "--out", "-"]
        collected = await anyio.run_process([*collect, "--delete"], env=env, check=False)
        # the emulator fails a login once: retried, it ended ok
        assert collected.returncode == 0 and len(collected.stdout.splitlines()) == 10
        async with aioredis.Redis.from_url(redis_url) as r:
            assert [k async for k in r.scan_iter(match="flinks-async:job:nightly:*")] == []


async def test_the_queue_commands_say_what_is_wrong_in_one_line(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    redis_url, _ = redis_server
    dead = f"redis://:pw-s3cret@127.0.0.1:{free_port()}/0"
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(demo_login_ids(3, seed=154)) + "\n")
    for cmd in (
        _enqueue_cmd(dead, ids_file),
        [*CLI, "worker", "--redis", dead],
        [*CLI, "status", "--redis", dead, "--job", "nightly"],
    ):
        done = await anyio.run_process(cmd, check=False)
        err = done.stderr.decode()
        assert done.returncode == 2 and err.count("\n") == 1, err
        assert "127.0.0.1" in err and "pw-s3cret" not in err
    out = tmp_path / "kept.jsonl"
    out.write_text("precious\n")
    unknown = await anyio.run_process(
        [*CLI, "collect", "--redis", redis_url, "--job", "nosuch", "--out", str(tmp_path / "x")],
        check=False,
    )
    assert unknown.returncode == 2 and "no job named 'nosuch'" in unknown.stderr.decode()
    assert not (tmp_path / "x").exists()
    async with Emulator(pending=0) as emu:
        await anyio.run_process(_enqueue_cmd(redis_url, ids_file), env=_env(emu))
        refused = await anyio.run_process(
            [*CLI, "collect", "--redis", redis_url, "--job", "nightly", "--out", str(out)],
            check=False,
        )
        assert refused.returncode == 2 and "--overwrite" in refused.stderr.decode()
        assert out.read_text() == "precious\n"
        st = await anyio.run_process([*CLI, "status", "--redis", redis_url, "--job", "nightly"])
        assert "job nightly: 3 logins, 0 done, 0 failed, 3 pending" in st.stdout.decode()


async def test_a_worker_survives_the_queues_redis_restarting(tmp_path: pathlib.Path) -> None:
    """The queue's redis-server (append-only file on) is stopped mid-pull and restarted:
    the running worker logs one line for the loss, reconnects, and the pull completes."""
    port = free_port()
    opts = ("--port", str(port), "--dir", str(tmp_path), "--appendonly", "yes")
    redis = start_redis(port, *opts, "--appendfsync", "always")
    redis_url = f"redis://127.0.0.1:{port}/0"
    ids = demo_login_ids(30, seed=155)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    log = tmp_path / "worker.log"
    try:
        async with Emulator(pending=60, payload_bytes=300) as emu:
            env = {**_env(emu), "FLINKS_POLL_INTERVAL": "0.05"}
            await anyio.run_process(_enqueue_cmd(redis_url, ids_file), env=env)
            worker = _spawn_worker(redis_url, env, log)
            try:
                with anyio.fail_after(60):
                    while emu.counts["Investments"] < 200:  # noqa: ASYNC110 - server's count
                        await anyio.sleep(0.02)
                redis.kill()
                redis.wait()
                await anyio.sleep(2)
                redis = start_redis(port, *opts, "--appendfsync", "always")
                out = tmp_path / "out.jsonl"
                with anyio.fail_after(120):
                    await _collect_when_done(redis_url, out)
                assert worker.poll() is None  # still running
            finally:
                _stop([worker])
    finally:
        redis.kill()
        redis.wait()
    text = log.read_text()
    assert text.count("lost the queue's Redis") == 1, text
    assert "Traceback" not in text
    lines = [msgspec.json.decode(line) for line in out.read_bytes().splitlines()]
    assert sorted(line["login_id"] for line in lines) == sorted(ids)


async def test_a_worker_with_a_wrong_key_stops_and_loses_no_login(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """A worker whose API key is wrong stops at the first answers (exit 2, one line), writes
    no result for any login and leaves them all on the queue: a worker set up right then
    pulls every one of them."""
    redis_url, _ = redis_server
    ids = demo_login_ids(30, seed=155)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    async with Emulator(pending=1, payload_bytes=300, api_key="right-key-1234") as emu:
        env = {**_env(emu), "FLINKS_API_KEY": "wrong-key-0000", "FLINKS_WORKER_CONCURRENCY": "10"}
        await anyio.run_process(_enqueue_cmd(redis_url, ids_file), env=env)
        with anyio.fail_after(120):  # far beyond what it needs: one round of answers
            wrong = await anyio.run_process(
                [*CLI, "worker", "--redis", redis_url], env=env, check=False
            )
        err = wrong.stderr.decode()
        assert wrong.returncode == 2, err
        assert err.count("flinks-async: error: set-up error:") == 1 and "check api_key" in err
        assert "wrong-key-0000" not in err and "Traceback" not in err
        assert emu.requests_total <= 3 * 10, emu.counts  # the logins it had started, no more
        status = await anyio.run_process(
            [*CLI, "status", "--redis", redis_url, "--job", "nightly"], env=env
        )
        assert "30 logins, 0 done, 0 failed, 30 pending" in status.stdout.decode()
        right = {**env, "FLINKS_API_KEY": "right-key-1234"}
        with anyio.fail_after(120):
            await anyio.run_process(
                [*CLI, "worker", "--redis", redis_url, "--burst"], env=right, check=True
            )
        code, report = await _collect_when_done(redis_url, tmp_path / "out.jsonl")
    lines = [
        msgspec.json.decode(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()
    ]
    assert sorted(line["login_id"] for line in lines) == sorted(ids)  # each once, all ok
    assert all(line["ok"] for line in lines) and code == 0, report
