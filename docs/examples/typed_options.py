"""Options as typed keywords: a wrapper passes them on, checked by the type checker; run by
the test suite."""

from typing import Unpack

from flinks_async import AccountsDetailCall, ClientOptions, FlinksClient
from flinks_async.testing import Emulator, demo_login_ids

CUSTOMER_ID = "43387ca6-0391-4c82-857d-70d95f087ecb"


def make_client(**options: Unpack[ClientOptions]) -> FlinksClient:
    """Our app's client: its own pool size unless told, any other option passed on."""
    options.setdefault("max_connections", 20)
    return FlinksClient(CUSTOMER_ID, **options)


async def transactions(client: FlinksClient, login_id: str, **o: Unpack[AccountsDetailCall]) -> int:
    detail = await client.accounts_detail(login_id, **o)  # a wrong option fails the type check
    return sum(len(account.transactions or ()) for account in detail.accounts or ())


async def main() -> None:
    async with Emulator() as emu, make_client(base_url=emu.url, poll_interval=0.05) as client:
        n = await transactions(
            client, demo_login_ids(1)[0], days_of_transactions="Days90", with_transactions=True
        )
    print(f"{n} transactions")
