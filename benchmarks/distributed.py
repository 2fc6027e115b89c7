"""Distributed pull throughput: the same job run by 1, 2 and 3 arq workers.

A redis-server on a free port (the Debian package), the emulator in its own process,
``flinks-async enqueue`` of ``logins`` ids, then N ``flinks-async worker`` processes until
``collect`` reports nothing pending. Reports logins/s from the first enqueue to the last
line stored. On a 2-core machine the workers and the emulator share the cores: more
workers mostly show the queue's overhead, not a speed-up a real fleet would see.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time

import anyio

from flinks_async.testing import demo_login_ids

from ._common import CUSTOMER, emulator_process, table
from .coordination import redis_server

CLI = [sys.executable, "-m", "flinks_async"]


@dataclasses.dataclass
class DistributedResult:
    logins: int
    rates: dict[int, float]  # workers -> logins/s


async def _run_one(redis_url: str, url: str, ids_file: str, logins: int, workers: int) -> float:
    env = {
        **os.environ,
        "FLINKS_CUSTOMER_ID": CUSTOMER,
        "FLINKS_BASE_URL": url,
        "FLINKS_POLL_INTERVAL": "0.01",
        "FLINKS_WORKER_CONCURRENCY": "50",
    }
    job = f"bench{workers}"
    started = time.perf_counter()
    await anyio.run_process(
        [*CLI, "enqueue", "--redis", redis_url, "--job", job, "--login-ids", ids_file], env=env
    )
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - started and left running, polled below
            [*CLI, "worker", "--redis", redis_url, "--burst"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        while any(p.poll() is None for p in procs):  # noqa: ASYNC110 - other processes
            await anyio.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    elapsed = time.perf_counter() - started
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as out:
        done = await anyio.run_process(
            [*CLI, "collect", "--redis", redis_url, "--job", job, "--out", out.name],
            env=env,
            check=False,
        )
    if " 0 pending" not in done.stderr.decode():
        raise RuntimeError(f"the pull did not finish: {done.stderr.decode()}")
    return logins / elapsed


async def run(logins: int = 3000, workers: tuple[int, ...] = (1, 2, 3)) -> DistributedResult | None:
    with redis_server() as redis_url:
        if redis_url is None:
            return None
        async with emulator_process("--pending", "2", "--payload-bytes", "2000") as emu:
            rates = {}
            for n in workers:
                ids = demo_login_ids(logins, seed=700 + n)
                with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
                    f.write("\n".join(ids) + "\n")
                try:
                    rates[n] = await _run_one(redis_url, emu.url, f.name, logins, n)
                finally:
                    os.unlink(f.name)
    return DistributedResult(logins, rates)


def markdown(result: DistributedResult | None) -> str:
    if result is None:
        return "_redis-server is not installed: skipped._"
    base = result.rates[min(result.rates)]
    rows = [(n, f"{rate:,.0f}", f"{rate / base:.2f}x") for n, rate in sorted(result.rates.items())]
    return (
        f"{result.logins:,} logins (Authorize, two 202s 10 ms apart, the 200), 50 at once per "
        "worker, from `enqueue` to the last result stored; workers, emulator and Redis share "
        "this machine's 2 cores.\n\n" + table(["workers", "logins/s", "vs 1 worker"], rows)
    )
