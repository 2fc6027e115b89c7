"""Memory of a fan-out of big answers: what ``max_body_bytes_in_flight`` bounds.

50 logins whose ``/GetAccountsDetail`` answer weighs 20 MB each, pulled at concurrency 50,
typed and ``raw=True``, with the default budget (256 MiB) and with the budget out of the
way (4 GiB, what the client did before it had one). Each pull runs in a child process of
its own, against the emulator in another, so the figures are the client's alone:

* peak RSS (``VmHWM``): what the operating system sees, allocator keeping included;
* Python's peak (``tracemalloc``, in a second child): the most memory held at once;
* wall time of the pull (from the first child).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap

import anyio

from flinks_async import FlinksClient
from flinks_async.testing import demo_login_ids

from ._common import CUSTOMER, emulator_process, table

MB = 1_000_000
MIB = 1024 * 1024

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time, tracemalloc
    from flinks_async import FlinksClient

    url, ids, customer = sys.argv[1], sys.argv[2].split(","), sys.argv[6]
    budget, raw, traced = map(int, sys.argv[3:6])
    if traced:
        tracemalloc.start()

    async def main():
        async with FlinksClient(
            customer, base_url=url, max_response_bytes=64 * 1024 * 1024,
            max_body_bytes_in_flight=budget,
        ) as client:
            started, ok = time.perf_counter(), 0
            async with client.many(
                "accounts-detail", ids, concurrency=len(ids), raw=bool(raw)
            ) as results:
                async for result in results:
                    ok += result.ok
            wall = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
        # VmHWM, not ru_maxrss: Linux carries a parent's peak into ru_maxrss across exec
        with open("/proc/self/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) * 1024
        print(json.dumps({"ok": ok, "wall": wall, "rss": rss, "traced": peak}))

    asyncio.run(main())
    """
)


@dataclasses.dataclass
class MemoryResult:
    variant: str
    budget: int
    rss: int
    traced: int
    wall: float
    ok: int


async def _child(
    url: str, ids: list[str], budget: int, raw: bool, traced: bool
) -> dict[str, float]:
    args = [url, ",".join(ids), str(budget), str(int(raw)), str(int(traced)), CUSTOMER]
    done = await anyio.run_process([sys.executable, "-c", CHILD, *args], check=False)
    if done.returncode:
        raise RuntimeError(f"the pull failed: {done.stderr.decode()[-2000:]}")
    report: dict[str, float] = json.loads(done.stdout)
    return report


async def run(size: int = 20 * MB, logins: int = 50) -> list[MemoryResult]:
    out = []
    async with emulator_process("--pending", "0", "--payload-bytes", str(size)) as emu:
        ids = demo_login_ids(logins, seed=300)
        async with FlinksClient(CUSTOMER, base_url=emu.url) as client:  # warm the emulator
            for login_id in ids:  # every payload variant generated before measuring
                await client.raw.accounts_detail(login_id)
        for raw in (False, True):
            for budget in (256 * MIB, 4096 * MIB):
                plain = await _child(emu.url, ids, budget, raw, traced=False)
                traced = await _child(emu.url, ids, budget, raw, traced=True)
                out.append(
                    MemoryResult(
                        "raw=True" if raw else "typed",
                        budget,
                        int(plain["rss"]),
                        int(traced["traced"]),
                        plain["wall"],
                        int(plain["ok"]),
                    )
                )
    return out


def markdown(results: list[MemoryResult], size: int, logins: int) -> str:
    rows = [
        (
            r.variant,
            f"{r.budget // MIB} MiB" + (" (default)" if r.budget == 256 * MIB else " (no bound)"),
            f"{r.rss / MB:.0f} MB",
            f"{r.traced / MB:.0f} MB",
            f"{r.wall:.1f} s",
            f"{r.ok}/{logins}",
        )
        for r in results
    ]
    return (
        f"{logins} logins, a {size / MB:.0f} MB `/GetAccountsDetail` answer each, pulled at "
        f"concurrency {logins} with `many()`; the client in a child process of its own.\n\n"
        + table(
            (
                "answers",
                "max_body_bytes_in_flight",
                "peak RSS",
                "Python's peak (tracemalloc)",
                "wall",
                "ok",
            ),
            rows,
        )
    )
