"""Cost of coordinating through Redis: the same pull with the in-process rate limiter and
single-flight, and with ``redis_url`` (the shared rate limit and the shared single-flight),
on a limit high enough never to make anyone wait.

The emulator runs in its own process; a ``redis-server`` (the Debian package) is started
on a free port when one is installed. Reports client CPU µs per request, logins/s and the
wall time over the in-process run, paired per round.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flinks_async import FlinksClient
from flinks_async.testing import demo_login_ids

from ._common import CUSTOMER, Stat, cpu_seconds, emulator_process, table

REQUESTS_PER_LOGIN = 3  # Authorize, one 202, the 200
SHARED = "Redis (rate limit + single-flight)"


@dataclasses.dataclass
class CoordinationResult:
    logins: int
    concurrency: int
    cpu_per_request: dict[str, Stat]
    rate: dict[str, Stat]
    vs_local: Stat
    #: scripts the redis-server ran per login for the client (``INFO commandstats``)
    scripts_per_login: float = 0.0
    #: the redis-server's CPU seconds per request
    redis_cpu_per_request: float = 0.0


@contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on a free port (``None`` when none is installed). Not
    pinned: pinned to the emulator's core, the wall times were the same (1.48x, 1.53x)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


async def _pull(url: str, ids: list[str], concurrency: int, redis_url: str | None) -> None:
    async with FlinksClient(
        CUSTOMER,
        base_url=url,
        poll_interval=0.001,
        poll_jitter=0.0,
        rate_limit=100_000,  # never reached: the cost of the bookkeeping alone
        redis_url=redis_url,
        max_connections=concurrency,
    ) as client:
        async with client.investments_many(ids, concurrency=concurrency) as results:
            async for r in results:
                if not r.ok:
                    raise RuntimeError(f"unexpected failure: {r.error}")


async def run(
    logins: int = 1000, concurrency: int = 64, rounds: int = 5
) -> CoordinationResult | None:
    with redis_server() as redis_url:
        if redis_url is None:
            return None
        async with emulator_process("--pending", "1", "--payload-bytes", "2000") as emu:
            contenders = {
                "in-process limiter": None,
                "Redis (rate limit + single-flight)": redis_url,
            }
            cpu: dict[str, list[float]] = {k: [] for k in contenders}
            commands: list[float] = []
            redis_cpu: list[float] = []
            walls: dict[str, list[float]] = {k: [] for k in contenders}
            for rnd in range(rounds + 1):
                order = list(contenders) if rnd % 2 else list(reversed(contenders))
                for n, name in enumerate(order):
                    ids = demo_login_ids(logins, seed=500 + rnd * 10 + n)
                    shared = contenders[name] is not None
                    before = _server(redis_url) if shared else (0, 0.0)
                    c0, t0 = cpu_seconds(), time.perf_counter()
                    await _pull(emu.url, ids, concurrency, contenders[name])
                    wall, used = time.perf_counter() - t0, cpu_seconds() - c0
                    if rnd:  # round 0 warms up
                        walls[name].append(wall)
                        cpu[name].append(used / (logins * REQUESTS_PER_LOGIN))
                        if shared:
                            scripts, server_cpu = _server(redis_url)
                            commands.append((scripts - before[0]) / logins)
                            server_cpu -= before[1]
                            redis_cpu.append(server_cpu / (logins * REQUESTS_PER_LOGIN))
    local = walls["in-process limiter"]
    return CoordinationResult(
        logins,
        concurrency,
        {k: Stat(v) for k, v in cpu.items()},
        {k: Stat([logins / w for w in v]) for k, v in walls.items()},
        Stat(
            [
                r / lo
                for r, lo in zip(walls["Redis (rate limit + single-flight)"], local, strict=True)
            ]
        ),
        statistics.median(commands),
        statistics.median(redis_cpu),
    )


def _server(redis_url: str) -> tuple[int, float]:
    """The scripts the redis-server has run for clients (``INFO commandstats``: EVALSHA and
    EVAL; the client sends nothing else per request), and its CPU seconds so far."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        stats: dict[str, dict[str, int]] = client.info("commandstats")  # type: ignore[assignment]
        pid = int(client.info("server")["process_id"])  # type: ignore[index]
    finally:
        client.close()
    scripts = sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )
    return scripts, cpu_seconds(pid)


def markdown(result: CoordinationResult | None) -> str:
    if result is None:
        return "_redis-server is not installed: skipped._"
    ratio = result.vs_local
    rows = [
        (
            name,
            f"{result.cpu_per_request[name].median * 1e6:.0f}",
            f"{result.rate[name].median:,.0f}",
            "1.00"
            if name == "in-process limiter"
            else f"{ratio.median:.2f}x ({ratio.min:.2f}–{ratio.max:.2f})",
        )
        for name in result.rate
    ]
    return (
        f"{result.logins:,} logins at concurrency {result.concurrency}, Authorize + one 202 + "
        f"the 200 each, `rate_limit=100000` (never waited for), redis-server on loopback "
        f"(on the same 2 cores: {result.redis_cpu_per_request * 1e6:.0f} µs of its CPU per "
        f"request); the client sent it {result.scripts_per_login:.2f} scripts per login "
        f"(its `INFO commandstats`).\n\n"
        + table(
            ["rate limiter", "client CPU µs/request", "logins/s", "wall time vs in-process"],
            rows,
        )
    )
