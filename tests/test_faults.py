"""The fault campaign: thousands of logins, faults drawn per login, nothing lost or leaked.

Marked slow; CI runs it. Rates (per login, drawn independently and deterministically):
10% HTTP 5xx, 5% connection reset, 5% truncated body, 3% 429 with Retry-After,
2% SESSION_NONEXISTENT mid-poll, 2% a fatal code, 1% never ready.

No deadline here measures the machine: the logins that can finish run under a
``poll_timeout`` of ``GENEROUS`` seconds (a login needs a few hundred milliseconds at most,
even on a loaded 2-core runner), and only the never-ready ones, which cannot finish
whatever the speed, run under a short one, through a ``with_options`` view of the same
client, in the same fan-out traffic.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import sys
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from flinks_async import Investments, LoginError, PollTimeoutError, Result
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import fast_client, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RATES = {
    "http_503": 0.10,
    "reset": 0.05,
    "truncate": 0.05,
    "rate_limit:0.01": 0.03,
    "SESSION_NONEXISTENT@data": 0.02,
    "INVALID_LOGIN@data": 0.02,
    "never_ready": 0.01,
}
LOGINS = 5_000
#: the deadline of the logins that can finish: far beyond what any of them needs
GENEROUS = 120.0
#: the deadline of the never-ready logins: what they are about, so short
NEVER_READY_TIMEOUT = 0.5


def _fds() -> collections.Counter[str]:
    kinds: collections.Counter[str] = collections.Counter()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        kinds["socket" if target.startswith("socket:") else "other"] += 1
    return kinds


def _tasks() -> int:
    return sum(
        getattr(t.get_coro(), "__qualname__", "") != "RequestHandler.start"
        for t in asyncio.all_tasks()
    )


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _campaign(seed: int) -> dict[str, object]:
    ids = demo_login_ids(LOGINS, seed=seed)
    results: dict[str, list[Result[Investments]]] = collections.defaultdict(list)
    async with Emulator(
        pending=1, payload_bytes=3_000, fault_rates=RATES, seed=seed, record=0
    ) as emu:
        expected = {i: emu.scenario(i) for i in ids}
        # a never-ready login that INVALID_LOGIN fails first is not waiting on its deadline
        never_ready = [
            i
            for i in ids
            if expected[i].never_ready
            and "INVALID_LOGIN" not in {f.kind for f in expected[i].faults}
        ]
        finishing = [i for i in ids if i not in set(never_ready)]
        assert never_ready, "no never-ready login drawn"
        # max_retries=4: a login's transient faults (at most 4 of them in a row) always clear
        async with fast_client(
            emu,
            max_retries=4,
            poll_interval=0.005,
            backoff_initial=0.002,
            backoff_max=0.01,
            poll_timeout=GENEROUS,
            max_connections=250,
            api_key=None,
            secret_key=None,
        ) as client:
            hopeless = client.with_options(poll_timeout=NEVER_READY_TIMEOUT)

            async def drain(
                stream_of: Callable[..., Any], batch: list[str], concurrency: int
            ) -> None:
                async with stream_of(batch, concurrency=concurrency) as stream:
                    async for r in stream:
                        results[r.login_id].append(r)

            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, client.investments_many, finishing, 240)
                tg.start_soon(drain, hopeless.investments_many, never_ready, 10)
            assert client.in_flight_requests == 0 and client.active_polls == 0
        injected = dict(emu.faults_injected)
        await wait_until(lambda: emu.active == 0)
    lost = [i for i in ids if i not in results]
    duplicated = [i for i, rs in results.items() if len(rs) != 1]
    wrong = []
    for login_id, scenario in expected.items():
        r = results[login_id][0]
        kinds = {f.kind for f in scenario.faults}
        if "INVALID_LOGIN" in kinds:  # fires on the first data request, before any wait
            ok = isinstance(r.error, LoginError)
        elif scenario.never_ready:
            ok = isinstance(r.error, PollTimeoutError)
        else:
            ok = r.ok
        if not ok:
            wrong.append((login_id, scenario, r))
    return {
        "lost": lost,
        "duplicated": duplicated,
        "wrong": wrong,
        "injected": injected,
        "failed": sum(not rs[0].ok for rs in results.values()),
    }


async def test_mixed_fault_bulk_run_loses_and_leaks_nothing() -> None:
    gc.collect()
    fds0, tasks0 = _fds(), _tasks()
    rss: list[int] = []
    live: list[int] = []  # allocator blocks in use: RSS also counts allocator warm-up
    for run in range(3):
        outcome = await _campaign(seed=500 + run)
        assert outcome["lost"] == [] and outcome["duplicated"] == []
        assert outcome["wrong"] == [], outcome["wrong"][:3]  # type: ignore[index]
        injected = outcome["injected"]
        assert isinstance(injected, dict)
        for kind in (
            "http_503",
            "reset",
            "truncate",
            "rate_limit",
            "SESSION_NONEXISTENT",
            "INVALID_LOGIN",
        ):
            assert injected.get(kind, 0) > 0, f"no {kind} injected"
        print(
            f"run {run}: {LOGINS} logins, faults injected {injected}, "
            f"failed as expected {outcome['failed']}, lost 0, duplicated 0"
        )
        await wait_until(lambda: _fds() == fds0)  # sockets and files back where they were
        assert _tasks() == tasks0
        gc.collect()
        rss.append(_rss())
        live.append(sys.getallocatedblocks())
    print("allocated blocks after each run:", live)
    print("RSS after each run (MB):", [round(r / 2**20, 1) for r in rss])
    # nothing a run allocated survives it: fewer new live blocks than one per login
    assert live[2] - live[0] < LOGINS, live
