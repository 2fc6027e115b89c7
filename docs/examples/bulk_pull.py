"""A fan-out with progress counting (run by the test suite against the emulator)."""

import collections

import anyio

from flinks_async import Event, FlinksClient
from flinks_async.testing import Emulator, demo_login_ids


async def main() -> None:
    counts: collections.Counter[str] = collections.Counter()

    def on_event(event: Event) -> None:  # called in the loop: keep it quick
        counts[event.kind] += 1

    async with Emulator(pending=2, fault_rates={"RETRY_LATER": 0.1, "INVALID_LOGIN": 0.05}) as emu:
        async with FlinksClient(
            "43387ca6-0391-4c82-857d-70d95f087ecb",
            base_url=emu.url,
            poll_interval=0.02,
            backoff_initial=0.01,
            rate_limit=2000,  # requests per second, across the client
        ) as client:
            ids = (login_id for login_id in demo_login_ids(200))  # any (async) iterable
            failed: list[str] = []
            async with client.investments_many(ids, concurrency=50, on_event=on_event) as results:
                async for r in results:  # completion order, exactly one per login
                    if not r.ok:
                        failed.append(f"{r.login_id}: {r.error}")
    print(f"{counts['done']} logins, {len(failed)} failed, {counts['pending']} pending polls")


if __name__ == "__main__":
    anyio.run(main)
