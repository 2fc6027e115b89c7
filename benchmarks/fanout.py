"""Fan-out scale: N logins, each pending twice, ~20 KB payloads, concurrency C, 0.2 s polls.

Measures wall time against the ideal schedule, peak RSS per in-flight login, open sockets
(never above the concurrency), lost or duplicated results (must be 0), and the time from
cancelling a running fan-out to every task ended and every connection closed.

Ideal schedule: a login cannot finish before its two 0.2 s poll waits have passed, and
only C run at once, so ``ideal = ceil(N / C) * pending * poll_interval``. The client is
pinned to one core, so its CPU time is a floor too: ``requests x CPU per request``; the
wall time cannot beat ``max(ideal, CPU floor)``.

Memory per in-flight login is measured with tracemalloc (Python allocations, exact) while
C logins that never become ready sit in flight against a second emulator (no payloads),
divided by C.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import sys
import time
import tracemalloc

import anyio

from flinks_async import Event, FlinksClient
from flinks_async.testing import demo_login_ids

from ._common import (
    CUSTOMER,
    Sampler,
    cpu_seconds,
    emulator_process,
    open_sockets,
    table,
)


@dataclasses.dataclass
class FanoutResult:
    logins: int
    concurrency: int
    wall: float
    ideal: float
    requests: int
    ok: int
    failed: int
    lost: int
    duplicated: int
    peak_sockets: int
    memory_per_login: float
    cancel_to_tasks_done: float
    cancel_to_sockets_closed: float
    client_cpu: float
    emulator_cpu: float

    def markdown(self) -> str:
        rows = [
            ("logins / concurrency", f"{self.logins} / {self.concurrency}"),
            ("wall time", f"{self.wall:.2f} s"),
            ("ideal schedule", f"{self.ideal:.2f} s"),
            ("wall / ideal", f"{self.wall / self.ideal:.2f}x"),
            ("HTTP requests", f"{self.requests} ({self.requests / self.wall:,.0f}/s)"),
            (
                "client CPU (of wall)",
                f"{self.client_cpu:.2f} s ({self.client_cpu / self.wall:.0%}),"
                f" {self.client_cpu / self.requests * 1e6:.0f} µs/request",
            ),
            (
                "emulator CPU (of wall)",
                f"{self.emulator_cpu:.2f} s ({self.emulator_cpu / self.wall:.0%})",
            ),
            ("results ok / failed", f"{self.ok} / {self.failed}"),
            ("lost / duplicated results", f"{self.lost} / {self.duplicated}"),
            ("peak open sockets (client)", f"{self.peak_sockets} (limit {self.concurrency})"),
            ("client CPU floor (requests x CPU/request)", f"{self.client_cpu:.2f} s"),
            (
                "wall / max(ideal, CPU floor)",
                f"{self.wall / max(self.ideal, self.client_cpu):.2f}x",
            ),
            (
                "memory per in-flight login (tracemalloc, no payload)",
                f"{self.memory_per_login / 1024:.1f} KB",
            ),
            ("cancel → all tasks ended", f"{self.cancel_to_tasks_done * 1e3:.0f} ms"),
            ("cancel → all sockets closed", f"{self.cancel_to_sockets_closed * 1e3:.0f} ms"),
        ]
        return table(["fan-out", "value"], rows)


async def _memory_per_login(concurrency: int, poll_interval: float) -> float:
    """Python memory held per login in flight (tracemalloc), payloads excluded."""
    ids = demo_login_ids(concurrency, seed=45)
    async with emulator_process("--fault-rate", "never_ready=1") as emu:
        async with FlinksClient(
            CUSTOMER,
            base_url=emu.url,
            poll_interval=poll_interval,
            max_connections=concurrency,
            poll_timeout=600.0,
        ) as client:
            pending: set[str] = set()
            all_pending = anyio.Event()

            def on_event(event: Event) -> None:
                if event.kind == "pending" and event.login_id:
                    pending.add(event.login_id)
                    if len(pending) == concurrency:
                        all_pending.set()

            gc.collect()
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            with anyio.CancelScope() as scope:
                async with client.investments_many(
                    ids, concurrency=concurrency, on_event=on_event
                ) as results:
                    await all_pending.wait()  # every login has been polled at least once
                    gc.collect()
                    held = tracemalloc.get_traced_memory()[0] - base
                    scope.cancel()
                    async for _ in results:
                        pass
            tracemalloc.stop()
    # the events' own set of ids is not the client's: take it out
    return max(0.0, (held - sys.getsizeof(pending) - 80 * len(pending)) / concurrency)


async def run(
    logins: int = 10_000,
    concurrency: int = 1_000,
    poll_interval: float = 0.2,
    payload_bytes: int = 20_000,
) -> FanoutResult:
    ids = demo_login_ids(logins, seed=42)
    warmup = demo_login_ids(50, seed=43)
    async with emulator_process("--pending", "2", "--payload-bytes", str(payload_bytes)) as emu:
        options = dict(
            base_url=emu.url,
            poll_interval=poll_interval,
            max_connections=concurrency,
            backoff_initial=0.05,
            poll_timeout=600.0,
        )
        # warm-up: connections, caches, imports
        async with FlinksClient(CUSTOMER, **options) as client:  # type: ignore[arg-type]
            async with client.investments_many(warmup, concurrency=50) as rs:
                [r async for r in rs]
        gc.collect()
        base_sockets = open_sockets()  # the event loop's own self-pipe socketpair
        sampler = Sampler()
        seen: dict[str, int] = {}
        ok = failed = 0
        async with FlinksClient(CUSTOMER, **options) as client:  # type: ignore[arg-type]
            async with anyio.create_task_group() as tg:
                tg.start_soon(sampler.run)
                started = time.perf_counter()
                cpu0, emu0 = cpu_seconds(), emu.cpu_seconds()
                async with client.raw.investments_many(ids, concurrency=concurrency) as results:
                    async for r in results:
                        seen[r.login_id] = seen.get(r.login_id, 0) + 1
                        ok += r.ok
                        failed += not r.ok
                wall = time.perf_counter() - started
                client_cpu, emulator_cpu = cpu_seconds() - cpu0, emu.cpu_seconds() - emu0
                tg.cancel_scope.cancel()
            requests = client.requests_sent

        # cancel-to-closed: cancel a running fan-out mid-flight (fresh logins: all pending)
        ids = demo_login_ids(logins, seed=44)
        async with FlinksClient(CUSTOMER, **options) as client:  # type: ignore[arg-type]
            with anyio.CancelScope() as scope:
                async with client.investments_many(ids, concurrency=concurrency) as results:
                    n = 0
                    async for _ in results:
                        n += 1
                        if n == concurrency:  # steady state: everything in flight
                            cancelled_at = time.perf_counter()
                            scope.cancel()
            tasks_done = time.perf_counter() - cancelled_at
        sockets_closed = time.perf_counter() - cancelled_at
        leftover = open_sockets() - base_sockets
    lost = sum(1 for i in demo_login_ids(logins, seed=42) if i not in seen)
    return FanoutResult(
        logins=logins,
        concurrency=concurrency,
        wall=wall,
        ideal=math.ceil(logins / concurrency) * 2 * poll_interval,
        requests=requests,
        ok=ok,
        failed=failed,
        lost=lost,
        duplicated=sum(c - 1 for c in seen.values()),
        peak_sockets=sampler.peak_sockets - base_sockets,
        memory_per_login=await _memory_per_login(concurrency, poll_interval),
        cancel_to_tasks_done=tasks_done,
        cancel_to_sockets_closed=sockets_closed if leftover == 0 else float("nan"),
        client_cpu=client_cpu,
        emulator_cpu=emulator_cpu,
    )
