"""Single-flight across real OS processes on a real redis-server: a failure reaches every
waiter, each caller gives up at its own deadline, and Flinks (the emulator, counting) sees
one Authorize per login.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import anyio
import pytest

from flinks_async import LoginError, PollTimeoutError
from flinks_async._redis._flights import decode_error, encode_error
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import CUSTOMER, needs_redis

pytestmark = pytest.mark.anyio

# One caller in a process of its own: builds its client, says "ready", waits for the file
# `go`, asks for the login, and prints how its call ended and after how long.
CALLER = """
import json, os, sys, time, anyio
from flinks_async import FlinksClient
async def main(url, redis_url, customer, login, timeout, go):
    async with FlinksClient(customer, base_url=url, redis_url=redis_url,
                            poll_interval=0.02, poll_timeout=float(timeout)) as client:
        print("ready", flush=True)
        while not os.path.exists(go):
            await anyio.sleep(0.01)
        started = time.monotonic()
        try:
            await client.investments(login)
            outcome = "ok"
        except Exception as exc:
            outcome = type(exc).__name__
            print(str(exc), file=sys.stderr)
        print(json.dumps({"outcome": outcome, "elapsed": time.monotonic() - started}),
              flush=True)
anyio.run(main, *sys.argv[1:])
"""


async def _callers(
    emu: Emulator, redis_url: str, login: str, timeout: float, n: int, go: pathlib.Path
) -> list[dict[str, object]]:
    procs = [
        await anyio.open_process(
            [
                *(sys.executable, "-c", CALLER, emu.url, redis_url, CUSTOMER),
                login,
                str(timeout),
                str(go),
            ],
            stderr=None,  # each caller's message, shown if the test fails
        )
        for _ in range(n)
    ]
    with anyio.fail_after(120):
        for p in procs:  # every one is ready before any asks
            assert p.stdout is not None
            assert (await p.stdout.receive()).decode().startswith("ready")
        go.touch()  # noqa: ASYNC240 - one empty file
        outs = []
        for p in procs:
            await p.wait()
            assert p.stdout is not None
            outs.append(json.loads((await p.stdout.receive()).decode()))
    return outs


@needs_redis
async def test_each_process_gives_up_at_its_own_deadline_on_one_authorize(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """Five processes ask for one login that never finishes, each with poll_timeout=3:
    each gets PollTimeoutError within about 3 s of asking (v0.x: one after the other, at
    3, 6, 9... s, as each waiter took the lease over and polled anew), and Flinks sees one
    Authorize and one process's polls."""
    redis_url, _ = redis_server
    login = demo_login_ids(1, seed=140)[0]
    async with Emulator() as emu:
        emu.set_login(login, faults=["never_ready"])
        outs = await _callers(emu, redis_url, login, 3.0, 5, tmp_path / "go")
        authorizes = emu.counts["Authorize"]
    assert [o["outcome"] for o in outs] == ["PollTimeoutError"] * 5
    elapsed = sorted(float(o["elapsed"]) for o in outs)  # type: ignore[arg-type]
    assert elapsed[-1] < 3.0 + 2.0, elapsed  # nobody waits on past its own deadline
    assert authorizes == 1


@needs_redis
async def test_a_waiter_in_another_process_gets_the_owners_failure(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """Three processes ask for a login Flinks rejects (INVALID_LOGIN, after a slow
    Authorize so that all three are waiting): every one raises LoginError, and Flinks saw
    one Authorize and one data request."""
    redis_url, _ = redis_server
    login = demo_login_ids(1, seed=141)[0]
    async with Emulator() as emu:
        emu.set_login(login, faults=["slow:1@authorize", "INVALID_LOGIN@data"])
        outs = await _callers(emu, redis_url, login, 30.0, 3, tmp_path / "go")
        counts = (emu.counts["Authorize"], emu.counts["Investments"])
    assert [o["outcome"] for o in outs] == ["LoginError"] * 3
    assert counts == (1, 1)


def test_a_shared_failure_keeps_its_type_and_fields_but_not_the_login() -> None:
    err = LoginError(
        "Invalid login", flinks_code="INVALID_LOGIN", http_status=401, login_id="owner-login"
    )
    err.request_id, err.endpoint = "rid-1", "Investments"
    stored = encode_error(err)
    assert stored is not None and b"owner-login" not in stored
    back = decode_error(stored, "waiter-login")
    assert isinstance(back, LoginError)
    assert (back.flinks_code, back.http_status, back.request_id) == ("INVALID_LOGIN", 401, "rid-1")
    assert back.login_id == "waiter-login" and "Invalid login" in str(back)
    timeout = PollTimeoutError("still pending", attempts=3, elapsed=2.5)
    back_timeout = decode_error(encode_error(timeout) or b"", "x")
    assert isinstance(back_timeout, PollTimeoutError) and back_timeout.attempts == 3
    assert isinstance(back_timeout, TimeoutError)
