"""Tens of thousands of logins in flight in one process: set up the GC first.

What ``flinks-async pull`` does before it starts; run by the test suite."""

import gc

import anyio

from flinks_async import FlinksClient
from flinks_async.testing import Emulator, demo_login_ids

CUSTOMER_ID = "43387ca6-0391-4c82-857d-70d95f087ecb"


def set_up_gc() -> None:
    """Each login in flight holds ~35 objects Python's cyclic GC tracks, and a full
    collection walks them all (1.2-1.4 s at 50,000 in flight, every few seconds by default).
    """
    gc.freeze()  # what start-up built (modules, classes) is never walked again
    young, middle, _ = gc.get_threshold()
    # a full collection per 10,000 middle-generation ones, not 10: at 50,000 in flight about
    # one every 14 minutes
    gc.set_threshold(young, middle, 10_000)


async def main() -> None:
    async with (
        Emulator() as emu,
        FlinksClient(CUSTOMER_ID, base_url=emu.url, poll_interval=0.05) as client,
        client.investments_many(demo_login_ids(500), concurrency=500) as results,
    ):
        ok = sum([r.ok async for r in results])
    every = gc.get_threshold()[2]
    print(f"{ok} logins pulled, a full collection at most every {every:,} middle ones")


if __name__ == "__main__":
    set_up_gc()  # once, at start-up: a process-wide choice, so the app's, not the library's
    anyio.run(main)
