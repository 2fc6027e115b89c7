"""Distributed pulls on arq with a real redis-server, workers as real OS processes."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import anyio
import msgspec
import pytest

from flinks_async.testing import Emulator, demo_login_ids

from .conftest import CUSTOMER, needs_redis

pytestmark = [pytest.mark.anyio, needs_redis]
CLI = [sys.executable, "-m", "flinks_async"]


def _env(emu: Emulator) -> dict[str, str]:
    return {
        **os.environ,
        "FLINKS_CUSTOMER_ID": CUSTOMER,
        "FLINKS_BASE_URL": emu.url,
        "FLINKS_POLL_INTERVAL": "0.01",
        "FLINKS_POLL_TIMEOUT": "4",
        "FLINKS_JOB_TIMEOUT": "5",  # a killed worker's logins run again ~15 s later
        "FLINKS_WORKER_CONCURRENCY": "50",
    }


async def _collect(redis_url: str, out: pathlib.Path) -> tuple[int, str]:
    proc = await anyio.run_process(
        [*CLI, "collect", "--redis", redis_url, "--job", "nightly", "--out", str(out)],
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
            done = await anyio.run_process(
                [
                    *CLI,
                    "enqueue",
                    "--redis",
                    redis_url,
                    "--job",
                    "nightly",
                    "--login-ids",
                    str(ids_file),
                ],
                env=env,
                check=False,
            )
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
                while True:
                    code, report = await _collect(redis_url, out)
                    if report.rstrip().endswith(" 0 pending"):
                        break
                    await anyio.sleep(0.5)
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(timeout=30)
    lines = [msgspec.json.decode(line) for line in out.read_bytes().splitlines()]
    assert sorted(line["login_id"] for line in lines) == sorted(ids)  # each exactly once
    failed = [line for line in lines if not line["ok"]]
    assert failed and all(line["error"]["flinks_code"] == "INVALID_LOGIN" for line in failed)
    assert f"3000 logins written to {out} ({len(failed)} failed), 0 pending" in report
    assert code == 1  # some logins failed: their lines say why
