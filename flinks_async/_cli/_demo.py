"""``flinks-async demo``: a realistic batch pulled from the built-in emulator, with live
progress and a summary (README's first command)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio

from .._client import FlinksClient
from .._cmdline import COUNT, SECONDS, add_loop, loop_name, number
from ._terminal import add_progress, fit, progress_display

if TYPE_CHECKING:
    from ._progress import Progress

__all__ = ["DEMO_CUSTOMER_ID", "DEMO_FAULTS", "add_parser", "run"]

DEMO_CUSTOMER_ID = "43387ca6-0391-4c82-857d-70d95f087ecb"
#: Faults drawn per login by ``demo``: some retries, a few failing logins.
DEMO_FAULTS = {
    "http_503@data": 0.06,
    "reset": 0.03,
    "rate_limit:0@data": 0.03,
    "SESSION_NONEXISTENT@data": 0.02,
    "INVALID_LOGIN@data": 0.015,
    "DISABLED_LOGIN@authorize": 0.01,
}


def add_parser(sub: Any) -> None:
    """``demo`` and its options, on the command line's subparsers."""
    d = sub.add_parser(
        "demo",
        help="pull a batch from the built-in emulator, with live progress",
        description="Pull a batch of logins from the built-in Flinks emulator (started in "
        "this process, on 127.0.0.1) with pending polls, retries and a few failing logins.",
    )
    d.add_argument("--logins", type=COUNT, default=300, help="logins to pull")
    d.add_argument("--concurrency", type=COUNT, default=100, help="logins in flight")
    d.add_argument("--pending", type=number(int, 0), default=2, help="202 answers before data")
    d.add_argument("--payload-bytes", type=COUNT, default=20_000, help="payload size")
    d.add_argument("--poll-interval", type=SECONDS, default=0.05, help="seconds between polls")
    d.add_argument("--no-faults", action="store_true", help="inject no faults")
    d.add_argument("--seed", type=int, default=1, help="seed of the login ids and faults")
    add_progress(d)
    add_loop(d)


async def run(args: argparse.Namespace) -> int:
    """Pull the demo batch; the exit status (0)."""
    from ..testing import Emulator, demo_login_ids

    faults = {} if args.no_faults else DEMO_FAULTS
    ids = demo_login_ids(args.logins, seed=args.seed)
    progress = progress_display(args.progress, len(ids))
    started = time.monotonic()
    async with Emulator(
        pending=args.pending,
        payload_bytes=args.payload_bytes,
        fault_rates=faults,
        seed=args.seed,
        record=0,
    ) as emu:
        print(
            fit(f"flinks-async demo: {len(ids)} logins from the emulator at {emu.url}")
            + "\n"
            + fit(
                f"concurrency {args.concurrency}, poll interval {args.poll_interval}s, "
                f"loop {loop_name()}"
            ),
            file=sys.stderr,
        )
        async with FlinksClient(
            DEMO_CUSTOMER_ID,
            base_url=emu.url,
            poll_interval=args.poll_interval,
            backoff_initial=0.02,
            backoff_max=0.2,
            max_connections=args.concurrency,
        ) as client:
            found = await _pull(client, ids, args.concurrency, progress)
            requests = client.requests_sent
        elapsed = time.monotonic() - started
    _print_summary(len(ids), progress, requests, elapsed, found)
    return 0


async def _pull(
    client: FlinksClient, ids: list[str], concurrency: int, progress: Progress
) -> tuple[int, int, int]:
    """The batch, with the live line: the accounts, positions and transactions found."""
    accounts = positions = transactions = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(progress.run)
        async with client.investments_many(
            ids, concurrency=concurrency, on_event=progress.hook
        ) as results:
            async for r in results:
                if r.ok and r.value is not None:
                    for acct in r.value.accounts or ():
                        accounts += 1
                        positions += len(acct.positions or ())
                        transactions += len(acct.transactions or ())
        tg.cancel_scope.cancel()
    return accounts, positions, transactions


def _print_summary(
    logins: int, progress: Progress, requests: int, elapsed: float, found: tuple[int, int, int]
) -> None:
    rows = [
        ("logins", f"{logins}"),
        ("succeeded", f"{progress.ok}"),
        ("failed", f"{progress.failed}"),
    ]
    rows += [(f"  {name}", f"{n}") for name, n in progress.errors.most_common()]
    rows += [
        ("pending polls", f"{progress.polls}"),
        ("retries", f"{progress.retries}"),
        ("HTTP requests", f"{requests} ({requests / elapsed:,.0f}/s)"),
        ("accounts / positions / transactions", " / ".join(map(str, found))),
        ("wall time", f"{elapsed:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\nsummary")
    for key, value in rows:
        print(fit(f"  {key:<{width}}  {value}", indent=" " * (width + 4), stream=sys.stdout))
