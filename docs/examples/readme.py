"""The README's example, run by the test suite against the emulator."""

import os

import anyio

from flinks_async import FlinksClient


async def main() -> None:
    login_ids = os.environ["LOGIN_IDS"].split(",")
    async with FlinksClient() as client:  # reads FLINKS_CUSTOMER_ID, FLINKS_API_KEY, ...
        inv = await client.investments(login_ids[0])  # Authorize, poll the 202s, decode
        for account in inv.accounts or ():
            print(account.name, account.type, account.account_value)

        async with client.investments_many(login_ids, concurrency=50) as results:
            async for r in results:  # completion order, exactly one per login
                print(r.login_id, "ok" if r.ok else r.error)


anyio.run(main)
