"""The nightly routine from outside (#35): ``flinks-async pull --skip-ineligible`` and
``enqueue --skip-ineligible`` run as subprocesses against the emulator; checked in the
output file's lines, the summary, and the emulator's recorded arrivals."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import anyio
import msgspec
import pytest

from flinks_async import FlinksClient
from flinks_async.testing import Emulator, demo_login_ids
from flinks_async.testing._accounts import INELIGIBLE_STATES

from .conftest import CUSTOMER, needs_redis

pytestmark = pytest.mark.anyio
CLI = [sys.executable, "-m", "flinks_async"]
KEY = "nightly-key-35"
#: what the emulator records of a pull of a login (nothing of it for an ineligible one)
PULLING = {"Authorize", "GetAccountsDetail", "GetAccountsDetailAsync"}


def _env(emu: Emulator, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "FLINKS_CUSTOMER_ID": CUSTOMER,
        "FLINKS_BASE_URL": emu.url,
        "FLINKS_NIGHTLY_REFRESH_KEY": KEY,
        "FLINKS_POLL_INTERVAL": "0.01",
        "FLINKS_JOB_BACKOFF": "0.2",
        **more,
    }


async def _pull(
    emu: Emulator, tmp_path: pathlib.Path, ids: list[str], *extra: str, **env: str
) -> subprocess.CompletedProcess[bytes]:
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    return await anyio.run_process(
        [
            *CLI,
            "pull",
            "--login-ids",
            str(tmp_path / "ids.txt"),
            "--out",
            str(tmp_path / "out.jsonl"),
            "--endpoint",
            "accounts-detail",
            "--poll-interval",
            "0.01",
            *extra,
        ],
        env=_env(emu, **env),
        check=False,
    )


def _lines(path: pathlib.Path) -> dict[str, dict[str, object]]:
    """The output's last line per login."""
    return {
        str(line["login_id"]): line
        for line in map(msgspec.json.decode, path.read_bytes().splitlines())
    }


def _pulled(emu: Emulator) -> set[str]:
    """The logins (lower case) the emulator saw any pulling request for."""
    return {r.login_id.lower() for r in emu.requests if r.endpoint in PULLING and r.login_id}


def _emulator() -> Emulator:
    return Emulator(
        seed=35, pending=1, payload_bytes=300, ineligible_rate=0.25, nightly_refresh_key=KEY
    )


async def test_pull_skip_ineligible_writes_a_relink_line_and_pulls_the_others(
    tmp_path: pathlib.Path,
) -> None:
    ids = demo_login_ids(40, seed=3501)
    async with _emulator() as emu:
        emu.accounts.enroll(ids)
        emu.accounts.enroll(demo_login_ids(5, seed=3502))  # other logins of the customer
        failing = next(i for i in ids if not emu.accounts.login(i).ineligible)
        emu.set_login(failing, faults=["INVALID_LOGIN@data"])
        ineligible = {i.lower() for i in ids if emu.accounts.login(i).ineligible}
        assert 4 <= len(ineligible) <= 16
        proc = await _pull(emu, tmp_path, [*ids, ids[-1]], "--skip-ineligible")  # a repeat too
        assert proc.returncode == 1, proc.stderr.decode()  # the failed login, not the others
        summary = proc.stderr.decode().splitlines()[0]
        assert (
            f"{39 - len(ineligible)} ok, 1 failed, {len(ineligible)} ineligible "
            "(need re-linking, not pulled)" in summary
        )
        lines = _lines(tmp_path / "out.jsonl")
        assert len((tmp_path / "out.jsonl").read_bytes().splitlines()) == 40  # one per login
        # one status request, before anything else; nothing of an ineligible login pulled
        assert emu.requests[0].endpoint == "GetNightlyRefreshStatus"
        assert emu.counts["GetNightlyRefreshStatus"] == 1
        assert _pulled(emu) == {i.lower() for i in ids} - ineligible
    for login_id in ids:
        line = lines[login_id]
        if login_id.lower() in ineligible:
            state = emu.accounts.login(login_id).ineligible
            assert state is not None
            error = line["error"]
            assert line["ok"] is False and line["ineligible"] is True
            assert isinstance(error, dict) and "re-link" in error["message"]
            assert (error["last_refresh_state"], error["last_refresh_error_code"]) == state[:2]
            assert state[:2] in INELIGIBLE_STATES
        else:
            assert line["ok"] is (login_id != failing) and "ineligible" not in line


async def test_a_relinked_login_is_pulled_on_resume(tmp_path: pathlib.Path) -> None:
    ids = demo_login_ids(6, seed=3503)
    async with _emulator() as emu:
        emu.accounts.set_login(ids[0], ineligible=("AnsweringSecurityChallenge", None))
        for login_id in ids[1:]:
            emu.accounts.set_login(login_id)
        first = await _pull(emu, tmp_path, ids, "--skip-ineligible")
        assert first.returncode == 0, first.stderr.decode()  # ineligible is not a failure
        assert "5 ok, 0 failed, 1 ineligible" in first.stderr.decode()
        emu.accounts.set_login(ids[0])  # the person re-linked
        again = await _pull(emu, tmp_path, ids, "--skip-ineligible", "--resume")
        assert again.returncode == 0, again.stderr.decode()
        assert "1 ok (1 of them failed before), 0 failed, 0 ineligible" in again.stderr.decode()
        assert _lines(tmp_path / "out.jsonl")[ids[0]]["ok"] is True


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"FLINKS_NIGHTLY_REFRESH_KEY": ""}, "--skip-ineligible needs the GetNightlyRefreshStatus"),
        ({"FLINKS_NIGHTLY_REFRESH_KEY": "wrong"}, "GetNightlyRefreshStatus"),
    ],
    ids=["no key", "wrong key"],
)
async def test_without_the_status_nothing_is_pulled(
    tmp_path: pathlib.Path, env: dict[str, str], says: str
) -> None:
    async with _emulator() as emu:
        proc = await _pull(emu, tmp_path, demo_login_ids(3, seed=3504), "--skip-ineligible", **env)
        assert proc.returncode == 2, proc.stderr.decode()
        assert says in proc.stderr.decode() and "wrong" not in proc.stderr.decode()
        assert not _pulled(emu)


@needs_redis
async def test_enqueue_skip_ineligible_queues_only_the_eligible(
    redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: pathlib.Path
) -> None:
    redis_url, _ = redis_server
    ids = demo_login_ids(30, seed=3505)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    queue = ["--redis", redis_url, "--job", "nightly"]
    async with _emulator() as emu:
        emu.accounts.enroll(ids)
        ineligible = {i.lower() for i in ids if emu.accounts.login(i).ineligible}
        assert ineligible
        env = _env(emu)
        enqueue = [*CLI, "enqueue", *queue, "--endpoint", "accounts-detail"]
        proc = await anyio.run_process(
            [*enqueue, "--login-ids", str(tmp_path / "ids.txt"), "--skip-ineligible"], env=env
        )
        n = len(ineligible)
        assert (
            f"enqueued {30 - n} logins for job nightly (0 already known, {n} ineligible"
            in proc.stderr.decode()
        )
        await anyio.run_process([*CLI, "worker", "--redis", redis_url, "--burst"], env=env)
        status = await anyio.run_process([*CLI, "status", *queue], env=env)
        assert f"{30 - n} done, 0 failed, {n} ineligible (need re-linking), 0 pending" in (
            status.stdout.decode()
        )
        retry = await anyio.run_process([*CLI, "enqueue", *queue, "--retry-failed"], env=env)
        assert "re-queued 0 failed logins" in retry.stderr.decode()
        both = [*CLI, "enqueue", *queue, "--retry-failed", "--skip-ineligible"]
        refused = await anyio.run_process(both, env=env, check=False)
        assert refused.returncode == 2 and b"goes with --login-ids" in refused.stderr
        out = tmp_path / "collected.jsonl"
        collect = [*CLI, "collect", *queue, "--out", str(out)]
        collected = await anyio.run_process(collect, env=env, check=False)
        assert collected.returncode == 0, collected.stderr.decode()
        assert "30 logins written" in collected.stderr.decode()
        assert emu.counts["GetNightlyRefreshStatus"] == 1
        assert _pulled(emu) == {i.lower() for i in ids} - ineligible
    lines = _lines(out)
    assert {k.lower() for k, v in lines.items() if v.get("ineligible")} == ineligible
    assert all(v["ok"] for v in lines.values() if not v.get("ineligible"))


async def test_a_standalone_emulator_lists_its_enrolled_ineligible_logins(
    tmp_path: pathlib.Path,
) -> None:
    """``serve-emulator --ineligible-rate 1 --enroll FILE``: the status lists them all."""
    ids = demo_login_ids(5, seed=3506)
    (tmp_path / "enrolled.txt").write_text("\n".join(ids) + "\n")
    env = {**os.environ, "FLINKS_EMULATOR_NIGHTLY_REFRESH_KEY": KEY}
    args = ["--port", "0", "--ineligible-rate", "1", "--enroll", str(tmp_path / "enrolled.txt")]
    proc = await anyio.open_process([*CLI, "serve-emulator", *args], env=env)
    try:
        assert proc.stderr is not None
        line = b""
        with anyio.fail_after(15):
            while b"serving on" not in line or not line.endswith(b"\n"):
                line += await proc.stderr.receive()
        url = line.split(b"serving on ")[1].split()[0].decode()
        async with FlinksClient(CUSTOMER, base_url=url, nightly_refresh_key=KEY) as client:
            listed = (await client.nightly_refresh_status()).by_login_id()
        assert set(listed) == {i.lower() for i in ids}
    finally:
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            await proc.wait()
