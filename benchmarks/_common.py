"""Shared benchmark machinery: the emulator in its own pinned process, samplers, stats."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import anyio

CUSTOMER = "43387ca6-0391-4c82-857d-70d95f087ecb"
CLIENT_CPU = 0
SERVER_CPU = 1

T = TypeVar("T")


def pin_client() -> str:
    """Pin this (client) process to CPU 0 when the machine has 2+ cores."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {CLIENT_CPU})
        return f"client pinned to CPU {CLIENT_CPU}"
    return "client not pinned"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class EmulatorProcess:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the emulator process has used so far."""
        return cpu_seconds(self.pid)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def emulator_process(*args: str) -> AsyncIterator[EmulatorProcess]:
    """Run ``python -m flinks_async.testing`` on its own core (``taskset``), on uvloop when
    it is installed (the CLI's ``--loop auto``)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "flinks_async.testing", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)  # noqa: ASYNC220
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(proc.pid, {SERVER_CPU})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if b"serving on" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        yield EmulatorProcess(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_sockets() -> int:
    """How many sockets this process holds open now."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                n += 1
    return n


@dataclasses.dataclass
class Sampler:
    """Samples RSS and open sockets every ``interval`` seconds while running."""

    interval: float = 0.05
    peak_rss: int = 0
    peak_sockets: int = 0
    samples: int = 0

    async def run(self) -> None:
        while True:
            self.sample()
            await anyio.sleep(self.interval)

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, rss_bytes())
        self.peak_sockets = max(self.peak_sockets, open_sockets())
        self.samples += 1


@dataclasses.dataclass
class Stat:
    """Median, min and max of repeated measurements."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def fmt(self, unit: str = "ms", scale: float = 1e3, digits: int = 1) -> str:
        return (
            f"{self.median * scale:.{digits}f} {unit} "
            f"({self.min * scale:.{digits}f}–{self.max * scale:.{digits}f})"
        )


def alternate(
    rounds: int, contenders: Sequence[tuple[str, Callable[[], float]]]
) -> dict[str, Stat]:
    """Run each contender once per round, in turn (so drift hits all alike)."""
    out: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for _ in range(rounds):
        for name, fn in contenders:
            out[name].append(fn())
    return {k: Stat(v) for k, v in out.items()}


@contextlib.contextmanager
def timer() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``, which only ever yields to let other tasks run (a sliced decode),
    without an event loop: each yield costs nothing, so its own work is what is timed."""
    while True:
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
