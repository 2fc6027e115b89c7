"""Metrics from event hooks, and OpenTelemetry spans (run by the test suite)."""

import collections

import anyio

from flinks_async import Event, FlinksClient
from flinks_async.testing import Emulator, demo_login_ids


class Metrics:
    """Counts and latencies; export them with your metrics library of choice."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.latencies: list[float] = []

    def __call__(self, event: Event) -> None:
        self.counts[event.kind] += 1
        if event.kind == "response" and event.elapsed is not None:
            self.latencies.append(event.elapsed)
        if event.kind == "done" and event.error is not None:
            self.counts[f"failed:{type(event.error).__name__}"] += 1


async def main() -> Metrics:
    metrics = Metrics()
    async with Emulator(pending=2) as emu:
        emu.set_login(demo_login_ids(3)[2], faults=["INVALID_LOGIN@data"])
        async with FlinksClient(
            "43387ca6-0391-4c82-857d-70d95f087ecb",
            base_url=emu.url,
            poll_interval=0.01,
            event_hooks=[metrics],
            tracing=True,  # spans too, when opentelemetry-api is installed
        ) as client:
            async with client.investments_many(demo_login_ids(3)) as results:
                async for _ in results:
                    pass
    print(dict(metrics.counts))
    return metrics


if __name__ == "__main__":
    anyio.run(main)
