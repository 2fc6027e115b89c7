"""Shared fixtures: an emulator on loopback and a fast client pointed at it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal

from flinks_async import FlinksClient, SyncFlinksClient
from flinks_async.testing import Emulator, demo_login_ids

CUSTOMER = "43387ca6-0391-4c82-857d-70d95f087ecb"
API_KEY = "test-api-key-5f1d0c"
SECRET = "test-secret-key-9b7e2a"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiohttp runs on asyncio only


@pytest.fixture
def login_ids() -> list[str]:
    return demo_login_ids(20, seed=7)


@pytest.fixture
def login(login_ids: list[str]) -> str:
    return login_ids[0]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(api_key=API_KEY, secret_key=SECRET, customer_id=CUSTOMER) as e:
        yield e


def fast_options(emu: Emulator, **options: object) -> dict[str, Any]:
    """The options of a client for ``emu``: credentials and millisecond intervals."""
    defaults: dict[str, Any] = dict(
        base_url=emu.url,
        api_key=API_KEY,
        secret_key=SECRET,
        poll_interval=0.005,
        backoff_initial=0.002,
        backoff_max=0.01,
        poll_timeout=20.0,
    )
    defaults.update(options)
    return defaults


def fast_client(emu: Emulator, **options: object) -> FlinksClient:
    """A client for ``emu`` with credentials and millisecond intervals."""
    return FlinksClient(CUSTOMER, **fast_options(emu, **options))


def fast_sync_client(emu: Emulator, **options: object) -> SyncFlinksClient:
    """:func:`fast_client`'s blocking twin."""
    return SyncFlinksClient(CUSTOMER, **fast_options(emu, **options))


@pytest.fixture
def emu_thread() -> Iterator[Emulator]:
    """An emulator serving from its own thread's loop, for blocking tests (which own
    the main thread)."""
    emu = Emulator(api_key=API_KEY, secret_key=SECRET, customer_id=CUSTOMER)
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(emu) as e:
        yield e


@pytest.fixture
def sync_client(emu_thread: Emulator) -> Iterator[SyncFlinksClient]:
    with fast_sync_client(emu_thread) as c:
        yield c


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[FlinksClient]:
    async with fast_client(emu) as c:
        yield c


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` every 5 ms until true; fail after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - the condition is another process's state
            await anyio.sleep(0.005)


async def assert_polling_stopped(emu: Emulator, quiet: float = 0.15) -> None:
    """Nothing new reaches the emulator for ``quiet`` seconds (many poll intervals).

    A request already on the wire when the client cancelled may still be processed just
    after; the first 50 ms let such stragglers land before the quiet window starts.
    """
    await anyio.sleep(0.05)
    seen = emu.requests_total
    await anyio.sleep(quiet)
    assert emu.requests_total == seen, "requests kept arriving: something is still polling"


# --- a real redis-server on loopback (the Debian package; .ci/run installs it) ----------

REDIS = shutil.which("redis-server")
# skipped on a machine without it, never in CI (.ci/run installs it: missing there is a failure)
needs_redis = pytest.mark.skipif(
    REDIS is None and not os.environ.get("CI"), reason="redis-server is not installed"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int, *options: str) -> subprocess.Popen[bytes]:
    """A real redis-server on loopback, no persistence, answering on ``port`` (TCP open)."""
    assert REDIS is not None, "redis-server is not installed (.ci/run installs it)"
    proc = subprocess.Popen(
        [REDIS, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.02)


@pytest.fixture
def redis_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real redis-server on a free loopback port; stopped after."""
    port = free_port()
    proc = start_redis(port, "--port", str(port))
    try:
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.kill()
        proc.wait()
