"""Webhooks from the command line, run as subprocesses: ``pull --webhooks`` receiving in its
own process, ``serve-webhooks`` receiving into Redis for a pull elsewhere, and the usage
errors. Counted at the emulator: with webhooks no login is polled.
"""

from __future__ import annotations

import pathlib
import subprocess
from collections.abc import AsyncIterator

import anyio
import pytest

from flinks_async.testing import Emulator, demo_login_ids

from .conftest import API_KEY, CUSTOMER, SECRET, free_port, needs_redis
from .test_cli import CLI, _env, _lines, _pull
from .test_webhooks import HOOK_SECRET

pytestmark = pytest.mark.anyio


@pytest.fixture
async def hooked() -> AsyncIterator[tuple[Emulator, int]]:
    """An emulator whose logins are ready 0.3 s after the first ask, sending webhooks to a
    port (nobody listens there until the test starts a receiver)."""
    port = free_port()
    async with Emulator(
        api_key=API_KEY,
        secret_key=SECRET,
        customer_id=CUSTOMER,
        ready_after=0.3,
        webhook_url=f"http://127.0.0.1:{port}/flinks/webhook",
        webhook_secret=HOOK_SECRET,
        webhook_retry_delay=0.2,
    ) as emu:
        yield emu, port


def _with_secret(env: dict[str, str], **more: str) -> dict[str, str]:
    return {**env, "FLINKS_WEBHOOK_SECRET": f"old-secret,{HOOK_SECRET}", **more}


async def test_pull_receives_its_webhooks_and_polls_no_login(
    hooked: tuple[Emulator, int], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, port = hooked
    ids = demo_login_ids(30, seed=60)
    monkeypatch.setenv("FLINKS_WEBHOOK_SECRET", f"old-secret,{HOOK_SECRET}")
    proc = await _pull(
        emu,
        tmp_path,
        "--webhook-listen",
        f"127.0.0.1:{port}",
        "--webhook-poll-interval",
        "600",
        ids=ids,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = _lines(tmp_path / "out.jsonl")
    assert sorted(str(x["login_id"]) for x in lines) == sorted(ids)
    assert all(x["ok"] for x in lines)
    assert emu.counts["Investments"] == len(ids)  # one request each: no poll
    assert sum(w.status == 200 for w in emu.webhooks_sent) == len(ids)


@needs_redis
async def test_serve_webhooks_wakes_a_pull_in_another_process(
    hooked: tuple[Emulator, int],
    tmp_path: pathlib.Path,
    redis_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    emu, port = hooked
    redis_url, _ = redis_server
    env = _with_secret(_env(emu, tmp_path), FLINKS_REDIS_URL=redis_url)
    receiver = await anyio.open_process(
        [*CLI, "serve-webhooks", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        assert receiver.stderr is not None
        with anyio.fail_after(60):
            first = (await receiver.stderr.receive()).decode()
        assert "receiving webhooks on http://127.0.0.1" in first
        assert HOOK_SECRET not in first and "old-secret" not in first
        ids = demo_login_ids(20, seed=61)
        (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
        pull = await anyio.run_process(
            [
                *CLI,
                "pull",
                "--login-ids",
                str(tmp_path / "ids.txt"),
                "--out",
                str(tmp_path / "out.jsonl"),
            ],
            env={**env, "FLINKS_WEBHOOKS": "1", "FLINKS_WEBHOOK_POLL_INTERVAL": "600"},
            check=False,
        )
        assert pull.returncode == 0, pull.stderr.decode()
    finally:
        receiver.terminate()
        await receiver.wait()
        if receiver.stderr is not None:
            await receiver.stderr.aclose()
    lines = _lines(tmp_path / "out.jsonl")
    assert sorted(str(x["login_id"]) for x in lines) == sorted(ids) and all(x["ok"] for x in lines)
    assert emu.counts["Investments"] == len(ids)


async def test_webhooks_without_a_way_in_or_without_a_secret_are_usage_errors(
    hooked: tuple[Emulator, int], tmp_path: pathlib.Path
) -> None:
    emu, port = hooked
    ids = demo_login_ids(2, seed=62)
    no_way = await _pull(emu, tmp_path, "--webhooks", ids=ids)
    assert no_way.returncode == 2
    assert "webhooks need a way in" in no_way.stderr.decode()
    no_secret = await _pull(emu, tmp_path, "--webhook-listen", f"127.0.0.1:{port}", ids=ids)
    assert no_secret.returncode == 2
    assert "FLINKS_WEBHOOK_SECRET" in no_secret.stderr.decode()
    bad = await _pull(emu, tmp_path, "--webhook-listen", "nowhere", ids=ids)
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr.decode()
    assert emu.requests_total == 0
    assert not (tmp_path / "out.jsonl").exists()


@needs_redis
async def test_queue_workers_take_the_webhook_path_too(
    hooked: tuple[Emulator, int],
    tmp_path: pathlib.Path,
    redis_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    emu, port = hooked
    redis_url, _ = redis_server
    env = _with_secret(
        _env(emu, tmp_path),
        FLINKS_REDIS_URL=redis_url,
        FLINKS_WEBHOOKS="1",
        FLINKS_WEBHOOK_POLL_INTERVAL="600",
        FLINKS_POLL_TIMEOUT="120",
    )
    ids = demo_login_ids(20, seed=63)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    receiver = await anyio.open_process(
        [*CLI, "serve-webhooks", "--listen", f"127.0.0.1:{port}"], env=env, stderr=subprocess.PIPE
    )
    try:
        assert receiver.stderr is not None
        with anyio.fail_after(60):
            assert b"receiving webhooks" in await receiver.stderr.receive()
        queue = ["--redis", redis_url, "--job", "hooked"]
        await anyio.run_process(
            [*CLI, "enqueue", *queue, "--login-ids", str(tmp_path / "ids.txt")], env=env
        )
        await anyio.run_process([*CLI, "worker", "--redis", redis_url, "--burst"], env=env)
        collected = await anyio.run_process(
            [*CLI, "collect", *queue, "--out", str(tmp_path / "out.jsonl")], env=env, check=False
        )
        assert collected.returncode == 0, collected.stderr.decode()
    finally:
        receiver.terminate()
        await receiver.wait()
        if receiver.stderr is not None:
            await receiver.stderr.aclose()
    lines = _lines(tmp_path / "out.jsonl")
    assert sorted(str(x["login_id"]) for x in lines) == sorted(ids) and all(x["ok"] for x in lines)
    assert emu.counts["Investments"] == len(ids)  # no worker polled: webhooks ended them
