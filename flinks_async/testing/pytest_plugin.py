"""pytest fixtures for testing code that uses flinks-async (needs anyio's pytest plugin).

``flinks_emulator``: a running :class:`~flinks_async.testing.Emulator` (fresh per test).
``flinks_client``: a :class:`~flinks_async.FlinksClient` pointed at it, with fast polls
(``poll_interval=0.01``) and fast retries (``backoff_initial=0.01``).

Mark the test ``@pytest.mark.anyio`` (asyncio backend: aiohttp needs asyncio)::

    @pytest.mark.anyio
    async def test_my_report(flinks_emulator, flinks_client):
        flinks_emulator.set_login(LOGIN, pending=3)
        report = await build_report(flinks_client, LOGIN)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .._client import FlinksClient
from ._emulator import Emulator

DEMO_CUSTOMER_ID = "43387ca6-0391-4c82-857d-70d95f087ecb"


@pytest.fixture
async def flinks_emulator() -> AsyncIterator[Emulator]:
    """A running Flinks emulator on 127.0.0.1 (a free port)."""
    async with Emulator() as emu:
        yield emu


@pytest.fixture
async def flinks_client(flinks_emulator: Emulator) -> AsyncIterator[FlinksClient]:
    """A FlinksClient for ``flinks_emulator`` with fast polls and retries."""
    async with FlinksClient(
        DEMO_CUSTOMER_ID,
        base_url=flinks_emulator.url,
        poll_interval=0.01,
        backoff_initial=0.01,
        backoff_max=0.05,
        poll_timeout=30,
    ) as client:
        yield client
