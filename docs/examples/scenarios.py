"""Emulator scenarios and faults (run by the test suite)."""

import anyio

from flinks_async import FlinksClient
from flinks_async.testing import Emulator, demo_login_ids


async def main() -> None:
    login_id, other = demo_login_ids(2)
    # Defaults for every login; faults drawn per login from rates, deterministically:
    async with Emulator(
        pending=2, payload_bytes=20_000, fault_rates={"reset": 0.05, "INVALID_LOGIN": 0.02}, seed=1
    ) as emu:
        # One login's own scenario: 5 pending answers, a 503 on its first request, then
        # RETRY_LATER with Retry-After: 0.01 on a data request.
        emu.set_login(login_id, pending=5, faults=["http_503", "RETRY_LATER:0.01@data"])
        async with FlinksClient(
            "43387ca6-0391-4c82-857d-70d95f087ecb",
            base_url=emu.url,
            poll_interval=0.01,
            backoff_initial=0.01,
        ) as client:
            await client.investments(login_id)
            print(
                emu.counts["Investments"],
                "Investments requests;",
                dict(emu.faults_injected),
                "faults;",
                emu.scenario(other),
            )


if __name__ == "__main__":
    anyio.run(main)
