"""The webhook receiver under attack: strangers cannot stall the client through its URL.

An aiohttp.web app (its own process, pinned to one core) serves
``client.webhook_receiver(secret)`` with the default :class:`~flinks_async.WebhookLimits`
and makes 200 data calls (``accounts_detail``: Authorize, two 202s polled every 50 ms, the
200) against the emulator (its own process, pinned to the other core), ``concurrency`` at
a time. The same run is made twice per round, alternating: quiet, and under attack from
this process:

* 50 connections that each send the headers of a POST declaring a 60 MiB body (a forged,
  well-formed signature) and one body byte, then nothing; each is opened again 0.1 s
  after the app closes it, and its lifetime (connect to close) is recorded;
* 20 forged full-size POSTs a second: 60 MiB sent as fast as the app reads it, until it
  answers.

A third run per round, "forged only", sends the forged POSTs alone: none is then refused
for want of a place held by a slow connection, so the receiver reads them (at most
``max_receiving_rate``), which is what costs the app's event loop CPU.

Reported: the calls' latency (p50 / p99 / max, median over rounds) and the p99 ratio to
the quiet run of the same round (median and range); the app's peak RSS (``VmHWM``) in
each mode; how long a slow connection lived; what the receiver answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from ._common import CLIENT_CPU, CUSTOMER, _free_port, emulator_process, table

SECRET = "whsec-benchmark"
DECLARED = 60 * 1024 * 1024
TRICKLES = 50
FORGED_PER_S = 20
#: each round runs these, in turn: slow connections (trickles) and forged POSTs, or none
MODES = {"quiet": (0, 0), "attack": (TRICKLES, FORGED_PER_S), "forged only": (0, FORGED_PER_S)}

APP = """
import asyncio, json, sys, time
from aiohttp import web
from flinks_async import FlinksClient
from flinks_async.testing import demo_login_ids

def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM"))

async def main(url, port, calls, concurrency, seed):
    async with FlinksClient(CUSTOMER, base_url=url, webhooks=True, poll_interval=0.05,
                            webhook_poll_interval=0.05, poll_jitter=0.0,
                            poll_timeout=300) as client:
        receiver = client.webhook_receiver(SECRET)
        app = web.Application()
        app.router.add_post("/flinks/webhook", receiver.aiohttp_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int(port)).start()
        print(json.dumps({"ready": hwm()}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        sem = asyncio.Semaphore(int(concurrency))
        latencies = []
        async def one(login):
            async with sem:
                t = time.perf_counter()
                await client.accounts_detail(login)
                latencies.append(time.perf_counter() - t)
        await asyncio.gather(*(one(i) for i in demo_login_ids(int(calls), seed=int(seed))))
        print(json.dumps({"latencies": latencies, "hwm": hwm(),
                          "counts": dict(receiver.counts)}), flush=True)
        await runner.cleanup()

CUSTOMER, SECRET = sys.argv[1:3]
asyncio.run(main(*sys.argv[3:]))
"""


@dataclasses.dataclass
class Run:
    mode: str  # one of MODES
    latencies: list[float]
    hwm: int  # bytes, the app's peak RSS over the whole run
    idle_hwm: int  # bytes, its peak RSS once ready, before the calls
    counts: dict[str, int]
    lifetimes: list[float]  # seconds a slow connection lived (attacked runs)
    forged: dict[int, int]  # status -> forged POSTs answered so


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Attacker:
    """The strangers: slow connections and forged full-size POSTs, until stopped."""

    def __init__(self, port: int, trickles: int, forged_per_s: int) -> None:
        self.port = port
        self.trickles, self.forged_per_s = trickles, forged_per_s
        self.lifetimes: list[float] = []
        self.forged: dict[int, int] = {}
        self.stopping = False
        self._head = (
            "POST /flinks/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {DECLARED}\r\n"
            "flinks-authenticity-key: QkFE+2ZvcmdlZC0zMi1ieXRlcy1vZi1zaWduYXR1cmU=\r\n\r\n"
        ).encode()

    async def _until_closed(self, reader: asyncio.StreamReader) -> bytes:
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                answer += chunk
        return answer

    async def trickle(self) -> None:
        while not self.stopping:
            started = time.monotonic()
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            try:
                writer.write(self._head + b"{")
                await self._until_closed(reader)
                if not self.stopping:
                    self.lifetimes.append(time.monotonic() - started)
            finally:
                writer.close()
            await asyncio.sleep(0.1)  # 50 connections, not a flood of connects

    async def forge(self) -> None:
        chunk = b" " * (1024 * 1024)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        answered = asyncio.ensure_future(self._until_closed(reader))
        try:
            writer.write(self._head)
            with contextlib.suppress(OSError):
                for _ in range(DECLARED // len(chunk)):
                    if answered.done() or self.stopping:
                        break
                    writer.write(chunk)
                    await writer.drain()
            answer = await answered
        finally:
            answered.cancel()
            writer.close()
        status = int(answer.split(b" ", 2)[1]) if answer else 0
        self.forged[status] = self.forged.get(status, 0) + 1

    async def run(self) -> None:
        tasks = [asyncio.ensure_future(self.trickle()) for _ in range(self.trickles)]
        while not self.stopping:
            if self.forged_per_s:
                tasks.append(asyncio.ensure_future(self.forge()))
            await asyncio.sleep(1 / (self.forged_per_s or 10))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _one(url: str, mode: str, calls: int, concurrency: int, seed: int) -> Run:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        APP,
        CUSTOMER,
        SECRET,
        url,
        str(port),
        str(calls),
        str(concurrency),
        str(seed),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(proc.pid, {CLIENT_CPU})
    attacker = Attacker(port, *MODES[mode])
    attack: asyncio.Future[None] | None = None
    try:
        idle = json.loads(await proc.stdout.readline())["ready"]
        if mode != "quiet":
            attack = asyncio.ensure_future(attacker.run())
            await asyncio.sleep(1.0)  # the attack is on before the first call
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        done: dict[str, Any] = json.loads(await proc.stdout.readline())
    finally:
        attacker.stopping = True
        if attack is not None:
            await attack
        if proc.returncode is None:
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return Run(
        mode,
        done["latencies"],
        done["hwm"],
        idle,
        done["counts"],
        attacker.lifetimes,
        attacker.forged,
    )


async def run(rounds: int = 5, calls: int = 200, concurrency: int = 10) -> list[Run]:
    runs: list[Run] = []
    seed = 0
    async with emulator_process("--pending", "2") as emu:
        for _ in range(rounds):
            for mode in MODES:  # new logins each run: every call polls its two 202s
                seed += 1
                runs.append(await _one(emu.url, mode, calls, concurrency, seed))
    return runs


def markdown(runs: list[Run]) -> str:
    by_mode = {mode: [r for r in runs if r.mode == mode] for mode in MODES}
    quiet = by_mode["quiet"]
    mib = 1024 * 1024

    def p99_ratios(rs: list[Run]) -> list[float]:
        return [
            _p(b.latencies, 0.99) / _p(a.latencies, 0.99) for a, b in zip(quiet, rs, strict=True)
        ]

    def row(name: str, rs: list[Run]) -> tuple[object, ...]:
        def med(q: float) -> float:
            return statistics.median(_p(r.latencies, q) for r in rs) * 1e3

        ratios = p99_ratios(rs)
        return (
            name,
            f"{med(0.5):.0f} / {med(0.99):.0f} / {med(1.0):.0f}",
            ""
            if rs is quiet
            else f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
            f"{max(r.hwm for r in rs) / mib:.0f} (idle {max(r.idle_hwm for r in rs) / mib:.0f})",
        )

    loud = [r for r in runs if r.mode != "quiet"]
    lifetimes = [t for r in loud for t in r.lifetimes]
    counts: dict[str, int] = {}
    forged: dict[int, int] = {}
    for r in loud:
        for k, v in r.counts.items():
            counts[k] = counts.get(k, 0) + v
        for s, n in r.forged.items():
            forged[s] = forged.get(s, 0) + n
    calls = len(runs[0].latencies)
    return (
        f"{calls} `accounts_detail` calls (Authorize, two 202s polled every 50 ms, the 200), "
        f"10 at a time, {len(quiet)} rounds of the three runs in turn; the app and the emulator "
        f"each on a core, the attacker (this process) unpinned. Attack: {TRICKLES} "
        f"connections trickling 60 MiB declared bodies plus {FORGED_PER_S} forged full-size "
        "POSTs a second; forged only: the POSTs alone (none blocked by the trickles' "
        "places: the receiver reads them, up to its read rate).\n\n"
        + table(
            [
                "run",
                "call latency ms (p50 / p99 / max, median of rounds)",
                "p99 / quiet's, median (range) of rounds",
                "app peak RSS MiB",
            ],
            [row(mode, rs) for mode, rs in by_mode.items()],
        )
        + "\n\n"
        + (
            f"- a slow connection lived {statistics.median(lifetimes):.2f} s (median), "
            f"{max(lifetimes):.2f} s at most ({len(lifetimes):,} connections)\n"
            if lifetimes
            else ""
        )
        + "- the receiver answered: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
        + "; forged POSTs got "
        + ", ".join(f"{s or 'no answer'}: {n:,}" for s, n in sorted(forged.items()))
        + "\n"
    )


if __name__ == "__main__":
    result = asyncio.run(run(rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 1))
    print(markdown(result))
