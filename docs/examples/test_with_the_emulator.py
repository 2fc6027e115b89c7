"""How a user tests their own code with the shipped fixtures (run by our test suite)."""

from decimal import Decimal

import pytest

from flinks_async import FlinksClient, LoginError
from flinks_async.testing import Emulator, demo_login_ids

LOGIN = demo_login_ids(1)[0]


async def total_value(client: FlinksClient, login_id: str) -> Decimal:
    """The user's own code under test (money is exact: Decimal)."""
    inv = await client.investments(login_id)
    return sum((a.account_value or Decimal(0) for a in inv.accounts or ()), Decimal(0))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_total_value_survives_a_flaky_flinks(
    flinks_emulator: Emulator, flinks_client: FlinksClient
) -> None:
    flinks_emulator.set_login(LOGIN, pending=3, faults=["http_503", "RETRY_LATER@data"])
    assert await total_value(flinks_client, LOGIN) > 0
    assert flinks_emulator.faults_injected["RETRY_LATER"] == 1


@pytest.mark.anyio
async def test_disabled_login_is_reported(
    flinks_emulator: Emulator, flinks_client: FlinksClient
) -> None:
    flinks_emulator.set_login(LOGIN, faults=["DISABLED_LOGIN@data"])
    with pytest.raises(LoginError):
        await total_value(flinks_client, LOGIN)
