"""The nightly routine in Python: ask which logins lost their nightly refresh, tell those
people to re-link, pull the others (run by the test suite against the emulator)."""

import anyio

from flinks_async import FlinksClient
from flinks_async.testing import Emulator, demo_login_ids


async def nightly(client: FlinksClient, login_ids: list[str]) -> tuple[int, int]:
    """Pull every eligible login; return (pulled, to re-link)."""
    ineligible = (await client.nightly_refresh_status()).by_login_id()  # once, first
    for login_id in login_ids:
        card = ineligible.get(login_id.lower())
        if card is not None:  # in your app: email the person a Flinks Connect link
            print(f"re-link {login_id}: {card.last_refresh_state} {card.last_refresh_error_code}")
    eligible = [i for i in login_ids if i.lower() not in ineligible]
    pulled = 0
    async with client.accounts_detail_many(eligible) as results:
        async for result in results:
            pulled += result.error is None
    return pulled, len(login_ids) - len(eligible)


async def main() -> None:
    logins = demo_login_ids(50, seed=35)
    async with Emulator(ineligible_rate=0.2, nightly_refresh_key="private-key") as emu:
        emu.accounts.enroll(logins)  # the customer's logins, as Flinks knows them
        async with FlinksClient(
            "my-customer-id",
            base_url=emu.url,
            nightly_refresh_key="private-key",
            poll_interval=0.01,
        ) as client:
            pulled, relink = await nightly(client, logins)
            directory = [i async for i in client.institutions()]  # page after page
    print(f"{pulled} pulled, {relink} to re-link; {len(directory)} institutions")


if __name__ == "__main__":
    anyio.run(main)
