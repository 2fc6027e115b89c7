"""A first pull from the built-in emulator (this file is run by the test suite)."""

import anyio

from flinks_async import FlinksClient
from flinks_async.testing import Emulator, demo_login_ids


async def main() -> None:
    async with Emulator(pending=2) as emu:  # a Flinks-like server on 127.0.0.1
        async with FlinksClient(
            "43387ca6-0391-4c82-857d-70d95f087ecb",
            base_url=emu.url,
            poll_interval=0.05,  # Flinks asks for 10 s; the emulator is quick
        ) as client:
            login_id = demo_login_ids(1)[0]
            inv = await client.investments(login_id)
            for account in inv.accounts or ():
                print(account.name, account.type, account.account_value)
                for position in account.positions or []:
                    if position.security is not None:
                        print("   ", position.security.symbol, position.market_value)


if __name__ == "__main__":
    anyio.run(main)
