"""The client on uvloop (``pip install 'flinks-async[speed]'``); run by the test suite."""

import asyncio

import anyio

from flinks_async import FlinksClient
from flinks_async.testing import Emulator, demo_login_ids

CUSTOMER_ID = "43387ca6-0391-4c82-857d-70d95f087ecb"


async def main() -> None:
    async with (
        Emulator() as emu,
        FlinksClient(CUSTOMER_ID, base_url=emu.url, poll_interval=0.05) as client,
        client.investments_many(demo_login_ids(20)) as results,
    ):
        ok = sum([r.ok async for r in results])
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"{ok} logins pulled on {loop}")


if __name__ == "__main__":
    # With anyio, as here; with plain asyncio: uvloop.run(main()), or on Python 3.12+
    # asyncio.run(main(), loop_factory=uvloop.new_event_loop).
    anyio.run(main, backend_options={"use_uvloop": True})
