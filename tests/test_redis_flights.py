"""Single-flight across real OS processes on a real redis-server: a failure reaches every
waiter, each caller gives up at its own deadline, and Flinks (the emulator, counting) sees
one Authorize per login.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from flinks_async import LoginError, PollTimeoutError
from flinks_async._redis._flights import decode_error, encode_error
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import CUSTOMER, needs_redis

pytestmark = pytest.mark.anyio

# One caller in a process of its own: builds its client, says "ready", waits for the file
# `go`, asks for the login, and prints how its call ended and after how long. With a file
# `stop` named, the call is cancelled when that file appears.
CALLER = """
import json, os, sys, time, anyio
from flinks_async import FlinksClient
async def main(url, redis_url, customer, login, timeout, go, stop=""):
    async with FlinksClient(customer, base_url=url, redis_url=redis_url,
                            poll_interval=0.02, poll_timeout=float(timeout)) as client:
        print("ready", flush=True)
        while not os.path.exists(go):
            await anyio.sleep(0.01)
        started = time.monotonic()
        error = {}
        outcome = "cancelled"
        try:
            async with anyio.create_task_group() as tg:
                async def call():
                    nonlocal outcome
                    await client.investments(login)
                    outcome = "ok"
                    tg.cancel_scope.cancel()
                async def stopper():
                    while not (stop and os.path.exists(stop)):
                        await anyio.sleep(0.01)
                    tg.cancel_scope.cancel()
                tg.start_soon(call)
                tg.start_soon(stopper)
        except* Exception as group:
            exc = group.exceptions[0]
            outcome = type(exc).__name__
            print(str(exc), file=sys.stderr)
            error = {"message": str(exc), "elapsed": getattr(exc, "elapsed", None),
                     "attempts": getattr(exc, "attempts", None),
                     "request_id": getattr(exc, "request_id", None)}
        print(json.dumps({"outcome": outcome, "elapsed": time.monotonic() - started,
                          "error": error}), flush=True)
anyio.run(main, *sys.argv[1:])
"""


async def _caller(emu: Emulator, redis_url: str, login: str, *args: str) -> Process:
    """One CALLER process, once it is ready."""
    proc = await anyio.open_process(
        [sys.executable, "-c", CALLER, emu.url, redis_url, CUSTOMER, login, *args], stderr=None
    )
    assert proc.stdout is not None
    with anyio.fail_after(60):
        assert (await proc.stdout.receive()).decode().startswith("ready")
    return proc


async def _ended(proc: Process) -> dict[str, Any]:
    with anyio.fail_after(60):
        await proc.wait()
    assert proc.stdout is not None
    out: dict[str, Any] = json.loads((await proc.stdout.receive()).decode())
    return out


async def _callers(
    emu: Emulator,
    redis_url: str,
    login: str,
    timeout: float,
    n: int,
    go: pathlib.Path,
    stagger: float = 0.0,
) -> list[dict[str, Any]]:
    """``n`` processes ask for ``login``: all at once, or each ``stagger`` seconds after
    the one before (each starts its own clock when it asks)."""
    gos = [go.with_name(f"{go.name}-{i}") if stagger else go for i in range(n)]
    procs = [
        await anyio.open_process(
            [
                *(sys.executable, "-c", CALLER, emu.url, redis_url, CUSTOMER),
                login,
                str(timeout),
                str(gos[i]),
            ],
            stderr=None,  # each caller's message, shown if the test fails
        )
        for i in range(n)
    ]
    with anyio.fail_after(120):
        for p in procs:  # every one is ready before any asks
            assert p.stdout is not None
            assert (await p.stdout.receive()).decode().startswith("ready")
        for i, path in enumerate(dict.fromkeys(gos)):
            if i:
                await anyio.sleep(stagger)  # the subject: calls that start apart
            path.touch()
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
    elapsed = sorted(float(o["elapsed"]) for o in outs)
    assert elapsed[-1] < 3.0 + 2.0, elapsed  # nobody waits on past its own deadline
    assert authorizes == 1


@needs_redis
async def test_processes_started_apart_each_give_up_at_their_own_deadline(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """Four processes ask for one login that never finishes, each with poll_timeout=1.5,
    started 0.4 s apart. The first polls; when it gives up, a process whose deadline is
    later takes the polling over with the same RequestId (no second Authorize), and so
    on. Each one fails at its own deadline with its own figures (before: every waiter
    failed when the first one did, with the first one's PollTimeoutError)."""
    redis_url, _ = redis_server
    login = demo_login_ids(1, seed=142)[0]
    timeout = 1.5
    async with Emulator() as emu:
        emu.set_login(login, faults=["never_ready"])
        outs = await _callers(emu, redis_url, login, timeout, 4, tmp_path / "go", stagger=0.4)
        authorizes = emu.counts["Authorize"]
        data = [r for r in emu.requests if r.endpoint == "Investments"]
    assert [o["outcome"] for o in outs] == ["PollTimeoutError"] * 4
    assert authorizes == 1
    # one session, polled past the first process's deadline, by the later ones
    rids = {r.request_id for r in data}
    assert len(rids) == 1 and None not in rids, rids
    assert data[-1].received_at - data[0].received_at > timeout + 0.4
    for o in outs:
        # each fails at its own deadline (never before it), not far after it
        assert timeout - 0.05 <= o["elapsed"] < timeout + 5.0, outs
        err = o["error"]
        assert timeout - 0.05 <= err["elapsed"] <= o["elapsed"] + 0.01, outs
        assert f"after {err['elapsed']:.1f}s" in err["message"], outs
        assert err["request_id"] in rids, outs  # the session it waited on, to resume


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
    # a caller's own deadline is its own: never shared (a waiter polls on instead)
    assert encode_error(PollTimeoutError("still pending", attempts=3, elapsed=2.5)) is None


@needs_redis
async def test_a_waiter_resumes_the_session_of_an_owner_that_was_cancelled(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """The process polling a login has its call cancelled while another waits for the
    same login: the waiter takes the run over at once with the same RequestId and gets
    the data (before: it authorized again, a second session at Flinks)."""
    redis_url, _ = redis_server
    login = demo_login_ids(1, seed=143)[0]
    go, stop, go2 = tmp_path / "go", tmp_path / "stop", tmp_path / "go2"
    async with Emulator() as emu:
        emu.set_login(login, pending=40)
        owner = await _caller(emu, redis_url, login, "30", str(go), str(stop))
        waiter = await _caller(emu, redis_url, login, "30", str(go2))
        go.touch()
        with anyio.fail_after(30):
            while emu.counts["Investments"] < 3:  # noqa: ASYNC110 - the server's count
                await anyio.sleep(0.01)
        go2.touch()  # the waiter asks while the owner polls...
        await anyio.sleep(0.2)
        polls_at_stop = emu.counts["Investments"]
        stop.touch()  # ...and the owner's call is cancelled
        owner_out, waiter_out = await _ended(owner), await _ended(waiter)
        authorizes = emu.counts["Authorize"]
        rids = {r.request_id for r in emu.requests if r.endpoint == "Investments"}
        polls = emu.counts["Investments"]
    assert (owner_out["outcome"], waiter_out["outcome"]) == ("cancelled", "ok")
    assert authorizes == 1 and len(rids) == 1
    assert polls_at_stop < 41 <= polls  # the waiter polled the rest of the same session


@needs_redis
async def test_a_call_soon_after_one_gave_up_polls_its_session_again(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    """A process gives up on a login (its poll_timeout); another asks for it right after:
    it polls the same RequestId, as Flinks asks, instead of opening a second session."""
    redis_url, _ = redis_server
    login = demo_login_ids(1, seed=144)[0]
    async with Emulator() as emu:
        emu.set_login(login, faults=["never_ready"])
        first = await _callers(emu, redis_url, login, 0.5, 1, tmp_path / "go")
        second = await _callers(emu, redis_url, login, 0.5, 1, tmp_path / "again")
        authorizes = emu.counts["Authorize"]
        rids = {r.request_id for r in emu.requests if r.endpoint == "Investments"}
    assert [first[0]["outcome"], second[0]["outcome"]] == ["PollTimeoutError"] * 2
    assert authorizes == 1 and len(rids) == 1
    assert first[0]["error"]["request_id"] == second[0]["error"]["request_id"] in rids
    # the second polled for its own 0.5 s (before: it got the first's stored error at once)
    assert second[0]["elapsed"] >= 0.45 and second[0]["error"]["attempts"] > 0, second
