"""Distributed pull throughput: the same job run by 1, 2 and 3 arq workers; and a
3-worker pull with one worker killed with -9 mid-run (:func:`run_killed`).

A redis-server on a free port (the Debian package), the emulator in its own process,
``flinks-async enqueue`` of ``logins`` ids, then N ``flinks-async worker`` processes until
``collect`` reports nothing pending. Reports logins/s from the first enqueue to the last
line stored. On a 2-core machine the workers and the emulator share the cores: more
workers mostly show the queue's overhead, not a speed-up a real fleet would see.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time

import aiohttp
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


@dataclasses.dataclass
class KilledResult:
    logins: int
    slice: float
    in_flight_at_kill: int  #: logins the killed worker held, by its own count
    done_after_kill: float  #: seconds from the kill until every login had its line
    authorize_per_login: dict[str, int]  #: at the emulator: {"1": n, "2": m}


async def _stats(url: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/_emulator/stats") as r:
        return dict(await r.json())


async def run_killed(logins: int = 600, slice_s: float = 20.0) -> KilledResult | None:
    """3 workers pull ``logins`` that stay pending ~60 s each (6 polls 10 s apart, as
    Flinks asks); once a third of them are authorized, worker 1 is killed with -9. How long
    until every login has its line, and how often each was authorized (the emulator's
    count): resumed logins carry on their session."""
    with redis_server() as redis_url:
        if redis_url is None:
            return None
        async with emulator_process("--pending", "6", "--payload-bytes", "2000") as emu:
            env = {
                **os.environ,
                "FLINKS_CUSTOMER_ID": CUSTOMER,
                "FLINKS_BASE_URL": emu.url,
                "FLINKS_POLL_INTERVAL": "10",
                "FLINKS_JOB_SLICE": str(slice_s),
                "FLINKS_WORKER_CONCURRENCY": str(logins),
                "FLINKS_WORKER_PROGRESS": "1",
            }
            ids = demo_login_ids(logins, seed=790)
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
                f.write("\n".join(ids) + "\n")
            logs = [tempfile.TemporaryFile("w+b") for _ in range(3)]  # noqa: SIM115 - closed below
            try:
                await anyio.run_process(
                    [
                        *CLI,
                        "enqueue",
                        "--redis",
                        redis_url,
                        "--job",
                        "killed",
                        "--login-ids",
                        *[f.name],
                    ],
                    env=env,
                )
                procs = [
                    subprocess.Popen(  # noqa: ASYNC220 - left running, stopped below
                        [*CLI, "worker", "--redis", redis_url],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                    for log in logs
                ]
                try:
                    while True:
                        counts = (await _stats(emu.url))["counts"]
                        assert isinstance(counts, dict)
                        if counts.get("Authorize", 0) >= logins // 3:
                            break
                        await anyio.sleep(0.1)
                    await anyio.sleep(2)  # let it hold its share for a moment
                    procs[0].send_signal(signal.SIGKILL)
                    procs[0].wait()
                    killed = time.perf_counter()
                    while True:
                        done = await anyio.run_process(
                            [*CLI, "status", "--redis", redis_url, "--job", "killed"], env=env
                        )
                        if " 0 pending" in done.stdout.decode():
                            break
                        await anyio.sleep(0.5)
                    after = time.perf_counter() - killed
                finally:
                    for p in procs:
                        if p.poll() is None:
                            p.send_signal(signal.SIGTERM)
                    for p in procs:
                        p.wait(timeout=60)
                stats = await _stats(emu.url)
                logs[0].seek(0)
                held = [
                    line for line in logs[0].read().decode().splitlines() if "in flight" in line
                ]
                in_flight = int(held[-1].split(", ")[-1].split()[0]) if held else -1
            finally:
                os.unlink(f.name)
                for log in logs:
                    log.close()
    per_login = stats["authorize_per_login"]
    assert isinstance(per_login, dict)
    return KilledResult(logins, slice_s, in_flight, after, per_login)


def killed_markdown(result: KilledResult | None) -> str:
    if result is None:
        return "_redis-server is not installed: skipped._"
    per = ", ".join(f"{k}x: {v:,}" for k, v in sorted(result.authorize_per_login.items()))
    return (
        f"{result.logins:,} logins over 3 workers, each pending ~60 s (6 polls 10 s apart), "
        f"slices of {result.slice:g} s; worker 1 killed with -9 while holding "
        f"{result.in_flight_at_kill} logins (its last progress line). Every login had its "
        f"line {result.done_after_kill:.1f} s after the kill; Authorize per login at the "
        f"emulator: {per}."
    )
