"""A script (or a notebook cell): the blocking client, no async anywhere (this file is
run by the test suite against the emulator)."""

import os

from flinks_async import SyncFlinksClient


def main() -> None:
    login_ids = os.environ["LOGIN_IDS"].split(",")
    with SyncFlinksClient() as client:  # reads FLINKS_CUSTOMER_ID, FLINKS_API_KEY, ...
        inv = client.investments(login_ids[0])  # blocks: Authorize, poll the 202s, decode
        for account in inv.accounts or ():
            print(account.name, account.type, account.account_value)

        with client.investments_many(login_ids, concurrency=50) as results:
            for r in results:  # completion order, exactly one per login
                print(r.login_id, "ok" if r.ok else r.error)


if __name__ == "__main__":
    main()
