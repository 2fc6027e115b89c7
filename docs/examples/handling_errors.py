"""Handling the typed errors (run by the test suite against the emulator)."""

import anyio

from flinks_async import (
    FlinksClient,
    FlinksError,
    LoginError,
    PollTimeoutError,
    TransientAPIError,
)
from flinks_async.testing import Emulator, demo_login_ids


async def fetch_or_explain(client: FlinksClient, login_id: str) -> str:
    try:
        inv = await client.investments(login_id)
    except ValueError:  # InvalidLoginIdError: not a GUID, nothing was sent
        return "not a Flinks loginId"
    except LoginError as exc:  # INVALID_LOGIN, DISABLED_LOGIN, NEW_ACCOUNT
        return f"ask the person to reconnect ({exc.flinks_code})"
    except PollTimeoutError as exc:
        return f"still processing after {exc.attempts} polls; try later"
    except TransientAPIError as exc:  # retried already; Flinks is having a bad time
        return f"try later ({exc.flinks_code or exc.http_status})"
    except FlinksError as exc:  # everything else the client raises
        return f"failed: {exc}"
    return f"{len(inv.accounts or ())} accounts"


async def main() -> None:
    ok, disabled, pending = demo_login_ids(3)
    async with Emulator() as emu:
        emu.set_login(disabled, faults=["DISABLED_LOGIN@data"])
        emu.set_login(pending, faults=["never_ready"])
        async with FlinksClient(
            "43387ca6-0391-4c82-857d-70d95f087ecb",
            base_url=emu.url,
            poll_interval=0.01,
            poll_timeout=0.2,
        ) as client:
            for login_id in (ok, disabled, pending, "oops"):
                print(await fetch_or_explain(client, login_id))


if __name__ == "__main__":
    anyio.run(main)
