"""The command line, run as a real subprocess against the emulator."""

from __future__ import annotations

import gc
import os
import pathlib
import re
import signal
import stat
import subprocess
import sys

import anyio
import anyio.abc
import msgspec
import pytest

from flinks_async import FlinksClient
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import API_KEY, CUSTOMER, SECRET, wait_until

pytestmark = pytest.mark.anyio
CLI = [sys.executable, "-m", "flinks_async"]


def _env(emu: Emulator, tmp_path: pathlib.Path) -> dict[str, str]:
    return {
        **os.environ,
        "FLINKS_CUSTOMER_ID": CUSTOMER,
        "FLINKS_BASE_URL": emu.url,
        "FLINKS_API_KEY": API_KEY,
        "FLINKS_SECRET_KEY": SECRET,
    }


def _lines(path: pathlib.Path) -> list[dict[str, object]]:
    text = path.read_bytes()
    assert text.endswith(b"\n")
    return [msgspec.json.decode(line) for line in text.splitlines()]


async def _pull(
    emu: Emulator, tmp_path: pathlib.Path, *extra: str, ids: list[str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    if ids is not None:
        (tmp_path / "ids.txt").write_text("# logins\n" + "\n".join(ids) + "\n\n")
    return await anyio.run_process(
        [
            *CLI,
            "pull",
            "--login-ids",
            str(tmp_path / "ids.txt"),
            "--out",
            str(tmp_path / "out.jsonl"),
            "--poll-interval",
            "0.01",
            *extra,
        ],
        env=_env(emu, tmp_path),
        check=False,
    )


async def _start_pull(
    emu: Emulator, tmp_path: pathlib.Path, ids: list[str], *extra: str
) -> anyio.abc.Process:
    """Start ``flinks-async pull`` of ``ids`` into tmp_path/out.jsonl, without waiting."""
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    return await anyio.open_process(
        [
            *CLI,
            "pull",
            "--login-ids",
            str(tmp_path / "ids.txt"),
            "--out",
            str(tmp_path / "out.jsonl"),
            "--poll-interval",
            "0.02",
            *extra,
        ],
        env=_env(emu, tmp_path),
    )


async def test_demo_runs_and_summarises() -> None:
    proc = await anyio.run_process(
        [*CLI, "demo", "--logins", "60", "--progress", "on"], check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert "summary" in out and "succeeded" in out and "logins" in out
    assert "ok " in proc.stderr.decode() and "req/s" in proc.stderr.decode()


@pytest.mark.parametrize("loop", ["auto", "asyncio", "uvloop"])
async def test_demo_runs_on_the_loop_asked_for(loop: str) -> None:
    pytest.importorskip("uvloop")
    proc = await anyio.run_process(
        [*CLI, "demo", "--logins", "20", "--progress", "off", "--loop", loop], check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    expected = "asyncio" if loop == "asyncio" else "uvloop"  # auto: uvloop when installed
    assert f"loop {expected}" in proc.stdout.decode() + proc.stderr.decode()


async def test_loop_uvloop_without_uvloop_is_a_usage_error() -> None:
    hide = "import sys; sys.modules['uvloop'] = None; from flinks_async._cli import main; "
    proc = await anyio.run_process(
        [sys.executable, "-c", hide + "sys.exit(main(sys.argv[1:]))", "demo", "--loop", "uvloop"],
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        "flinks-async: error: --loop uvloop: uvloop is not installed "
        "(pip install 'flinks-async[speed]')"
    ]
    auto = await anyio.run_process(
        [sys.executable, "-c", hide + "sys.exit(main(sys.argv[1:]))", "demo", "--logins", "5"],
        check=False,
    )
    assert auto.returncode == 0 and "loop asyncio" in auto.stderr.decode()


@pytest.mark.parametrize("command", ["demo", "serve-emulator"])
async def test_bulk_commands_set_up_the_garbage_collector(command: str) -> None:
    """``demo``/``pull``/``worker`` make full collections rare (Performance page); the
    emulator server does not. Both exit here on their own (the server at once: bad port)."""
    code = (
        "import gc, sys; from flinks_async._cli import main\n"
        "frozen = gc.get_freeze_count()\n"  # not 0 at start-up on Python 3.12
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(gc.get_threshold()[2], gc.get_freeze_count() > frozen)"
    )
    args = ["--logins", "5", "--progress", "off"] if command == "demo" else ["--port", "-1"]
    proc = await anyio.run_process(
        [sys.executable, "-c", code, command, *args], check=False, stderr=subprocess.DEVNULL
    )
    threshold, frozen = proc.stdout.decode().splitlines()[-1].split()
    if command == "demo":
        assert (int(threshold), frozen) == (10_000, "True")
    else:
        assert (int(threshold), frozen) == (gc.get_threshold()[2], "False")


async def test_pull_writes_one_jsonl_line_per_login(emu: Emulator, tmp_path: pathlib.Path) -> None:
    ids = demo_login_ids(30, seed=21)
    emu.set_login(ids[0], faults=["INVALID_LOGIN@data"])
    proc = await _pull(emu, tmp_path, "--endpoint", "accounts-detail", ids=ids)
    assert proc.returncode == 1  # some logins failed
    lines = _lines(tmp_path / "out.jsonl")
    assert sorted(str(x["login_id"]) for x in lines) == sorted(ids)
    bad = next(x for x in lines if x["login_id"] == ids[0])
    assert bad["ok"] is False
    error = bad["error"]
    assert isinstance(error, dict)
    assert error["type"] == "LoginError" and error["flinks_code"] == "INVALID_LOGIN"
    assert error["http_status"] == 401 and error["request_id"] and error["message"]
    good = next(x for x in lines if x["ok"])
    assert good["endpoint"] == "GetAccountsDetail"
    assert good["data"]["Accounts"]  # type: ignore[index]
    assert stat.S_IMODE((tmp_path / "out.jsonl").stat().st_mode) == 0o600
    stderr = proc.stderr.decode()
    assert "29 ok, 1 failed" in stderr and "INVALID_LOGIN: 1" in stderr
    assert API_KEY not in stderr and SECRET not in stderr


async def test_resume_skips_done_logins_and_repairs_a_torn_line(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    ids = demo_login_ids(10, seed=22)
    proc = await _pull(emu, tmp_path, ids=ids[:4])
    assert proc.returncode == 0
    torn = b'{"login_id":"' + ids[4].encode() + b'","ok":true,"data":{"Inv'
    out = tmp_path / "out.jsonl"
    out.write_bytes(out.read_bytes() + torn)
    proc = await _pull(emu, tmp_path, "--resume", ids=ids)
    assert proc.returncode == 0
    assert b"repaired" in proc.stderr and b"4 skipped" in proc.stderr
    lines = _lines(tmp_path / "out.jsonl")
    assert sorted(str(x["login_id"]) for x in lines) == sorted(ids)


async def test_pull_reads_login_ids_from_stdin_and_writes_stdout(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    ids = demo_login_ids(5, seed=26)
    proc = await anyio.run_process(
        [
            *CLI,
            "pull",
            "--login-ids",
            "-",
            "--poll-interval",
            "0.01",
            "--endpoint",
            "accounts-summary",
        ],
        input=("\n".join(ids) + "\n").encode(),
        env=_env(emu, tmp_path),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [msgspec.json.decode(x) for x in proc.stdout.splitlines()]
    assert sorted(x["login_id"] for x in lines) == sorted(ids)
    assert all(x["ok"] and x["data"]["Accounts"] for x in lines)
    assert b"5 ok, 0 failed" in proc.stderr  # the summary goes to stderr, data to stdout


async def test_resume_refuses_a_file_that_is_not_ours(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    ids = demo_login_ids(3, seed=25)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"login_id":"x","ok":true}\nsomething else\n{"login_id":"y","ok":true}\n')
    before = out.read_bytes()
    proc = await _pull(emu, tmp_path, "--resume", ids=ids)
    assert proc.returncode == 2
    assert b"not a flinks-async result line" in proc.stderr
    assert out.read_bytes() == before  # untouched


async def test_kill_9_mid_run_then_resume_loses_nothing(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    ids = demo_login_ids(400, seed=23)
    emu.pending = 3
    out = tmp_path / "out.jsonl"
    proc = await _start_pull(emu, tmp_path, ids, "--concurrency", "20")
    await wait_until(lambda: out.exists() and out.stat().st_size > 100_000, timeout=30)
    proc.kill()  # SIGKILL: no chance to clean up
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    written = out.read_bytes().count(b"\n")
    assert 0 < written < 400
    done = await _pull(emu, tmp_path, "--resume")
    assert done.returncode == 0, done.stderr.decode()
    lines = _lines(out)
    assert sorted(str(x["login_id"]) for x in lines) == sorted(ids)  # each exactly once


async def test_sigint_stops_cleanly_with_a_valid_file(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    ids = demo_login_ids(50, seed=24)
    for i in ids[10:]:
        emu.set_login(i, faults=["never_ready"])
    out = tmp_path / "out.jsonl"
    proc = await _start_pull(emu, tmp_path, ids)
    await wait_until(lambda: out.exists() and out.read_bytes().count(b"\n") == 10, timeout=30)
    proc.send_signal(signal.SIGINT)
    with anyio.fail_after(10):
        await proc.wait()
    assert proc.returncode == 130
    assert len(_lines(out)) == 10
    await wait_until(lambda: emu.active == 0)


async def test_credentials_are_never_command_line_options(tmp_path: pathlib.Path) -> None:
    proc = await anyio.run_process(
        [*CLI, "pull", "--login-ids", "-", "--api-key", "x"], check=False
    )
    assert proc.returncode == 2 and b"unrecognized arguments" in proc.stderr


async def test_serve_emulator_standalone(tmp_path: pathlib.Path) -> None:
    # port 0: the OS picks a free one and the emulator prints it (no fixed port to collide)
    proc = await anyio.open_process(
        [sys.executable, "-m", "flinks_async.testing", "--port", "0", "--pending", "1"]
    )
    try:
        assert proc.stderr is not None
        line = b""
        with anyio.fail_after(15):
            while b"serving on" not in line or not line.endswith(b"\n"):
                line += await proc.stderr.receive()
        found = re.search(rb"serving on (http://127\.0\.0\.1:(\d+))", line)
        assert found is not None and int(found[2]) > 0
        async with FlinksClient(CUSTOMER, base_url=found[1].decode(), poll_interval=0.01) as client:
            assert (await client.investments(demo_login_ids(1)[0])).accounts
    finally:
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            await proc.wait()
