"""``flinks-async pull`` as a careful user runs it: it never destroys or misleads.

Each case runs the CLI as a subprocess and checks the exit status, the first line of
stderr and the output file's bytes before and after.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import socket

import anyio
import msgspec
import pytest

from flinks_async._cli import _parser
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import wait_until
from .test_cli import CLI, _env, _lines, _pull

pytestmark = pytest.mark.anyio


def first_line(stderr: bytes) -> str:
    return stderr.decode().splitlines()[0] if stderr else ""


def written_lines(out: pathlib.Path) -> list[bytes]:
    """The lines of a pull's output; a pull that wrote none left no file behind."""
    if not out.exists():
        return []
    lines = out.read_bytes().splitlines()
    assert lines, f"{out} was left empty"
    return lines


@pytest.mark.parametrize(
    "content",
    [b'{"a": 1}\n', b'{"a": 1}', b"my notes\nmore notes\n", b'{"login_id": "x"}\n'],
    ids=["a json line", "one line without newline", "text", "a line missing our fields"],
)
async def test_resume_never_touches_a_file_that_is_not_ours(
    emu: Emulator, tmp_path: pathlib.Path, content: bytes
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(content)
    proc = await _pull(emu, tmp_path, "--resume", ids=demo_login_ids(5, seed=40))
    assert proc.returncode == 2
    assert first_line(proc.stderr).startswith("flinks-async: error: ")
    assert "left as it is" in first_line(proc.stderr)
    assert out.read_bytes() == content
    assert emu.requests_total == 0


async def test_resume_refuses_another_endpoints_file(emu: Emulator, tmp_path: pathlib.Path) -> None:
    ids = demo_login_ids(3, seed=41)
    assert (await _pull(emu, tmp_path, ids=ids)).returncode == 0
    before = (tmp_path / "out.jsonl").read_bytes()
    proc = await _pull(emu, tmp_path, "--resume", "--endpoint", "accounts-detail", ids=ids)
    assert proc.returncode == 2 and "holds Investments results" in first_line(proc.stderr)
    assert (tmp_path / "out.jsonl").read_bytes() == before


async def test_resume_pulls_failed_logins_again(emu: Emulator, tmp_path: pathlib.Path) -> None:
    ids = demo_login_ids(6, seed=42)
    for login in ids[:2]:
        emu.set_login(login, faults=["INVALID_LOGIN@data"])
    first = await _pull(emu, tmp_path, ids=ids)
    assert first.returncode == 1
    for login in ids[:2]:  # fixed at Flinks' end
        emu.set_login(login)
    again = await _pull(emu, tmp_path, "--resume", ids=ids)
    assert again.returncode == 0, again.stderr.decode()
    assert "2 ok (2 of them failed before), 0 failed; 4 skipped" in first_line(again.stderr)
    lines = _lines(tmp_path / "out.jsonl")
    last: dict[str, object] = {}
    for line in lines:  # the last line of a login is its state
        last[str(line["login_id"])] = line["ok"]
    assert last == dict.fromkeys(ids, True)


async def test_skip_failed_keeps_them_failed_and_says_so(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    ids = demo_login_ids(4, seed=43)
    emu.set_login(ids[0], faults=["INVALID_LOGIN@data"])
    assert (await _pull(emu, tmp_path, ids=ids)).returncode == 1
    before = (tmp_path / "out.jsonl").read_bytes()
    proc = await _pull(emu, tmp_path, "--resume", "--skip-failed", ids=ids)
    assert proc.returncode == 1  # the file still holds a failure
    assert "3 skipped" in first_line(
        proc.stderr
    ) and "1 failed before and skipped (--skip-failed)" in first_line(proc.stderr)
    assert (tmp_path / "out.jsonl").read_bytes() == before


async def test_a_non_empty_output_is_refused_unless_resume_or_overwrite(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    ids = demo_login_ids(5, seed=44)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"precious\n")
    proc = await _pull(emu, tmp_path, ids=ids)
    assert proc.returncode == 2
    assert first_line(proc.stderr) == (
        f"flinks-async: error: {out} is not empty: pass --resume to continue it or "
        "--overwrite to replace it"
    )
    assert out.read_bytes() == b"precious\n" and emu.requests_total == 0
    proc = await _pull(emu, tmp_path, "--overwrite", ids=ids)
    assert proc.returncode == 0
    assert sorted(str(x["login_id"]) for x in _lines(out)) == sorted(ids)
    proc = await _pull(emu, tmp_path, "--resume", "--overwrite", ids=ids)
    assert proc.returncode == 2 and "not allowed with argument" in first_line(proc.stderr)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--login-ids", "missing.txt"], "missing.txt: No such file or directory"),
        (["--concurrency", "0"], "argument --concurrency: must be >= 1, got 0"),
        (["--concurrency", "many"], "argument --concurrency: not a number: 'many'"),
        (["--poll-interval", "0"], "argument --poll-interval: must be > 0, got 0"),
        (["--rate-limit", "1.5"], "rate_limit=1.5 is not a whole number"),
        (["--out", "no/such/dir/out.jsonl"], "no/such/dir/out.jsonl: No such file or directory"),
        (["--skip-failed"], "--skip-failed goes with --resume"),
        (["--api-key-file", "nope.key"], "nope.key: No such file or directory"),
    ],
)
async def test_usage_errors_are_one_line_exit_2_and_create_nothing(
    emu: Emulator, tmp_path: pathlib.Path, args: list[str], says: str
) -> None:
    (tmp_path / "ids.txt").write_text("\n".join(demo_login_ids(3, seed=45)) + "\n")
    command = [*CLI, "pull", "--login-ids", "ids.txt", "--out", "out.jsonl", *args]
    proc = await anyio.run_process(command, env=_env(emu, tmp_path), cwd=tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flinks-async") and says in lines[0], lines
    assert not (tmp_path / "out.jsonl").exists()
    assert emu.requests_total == 0


async def test_invalid_utf8_in_the_ids_is_a_usage_error(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    ids = demo_login_ids(2, seed=46)
    (tmp_path / "ids.txt").write_bytes(ids[0].encode() + b"\n\xff\xfe\n" + ids[1].encode())
    proc = await anyio.run_process(
        [*CLI, "pull", "--login-ids", "ids.txt", "--out", "out.jsonl", "--poll-interval", "0.01"],
        env=_env(emu, tmp_path),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert "flinks-async: error: ids.txt: line 2 is not UTF-8 text" in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    # the login before the bad line was pulled and written, whole
    assert [x["login_id"] for x in _lines(tmp_path / "out.jsonl")] == [ids[0]]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once closed


async def test_a_wrong_base_url_stops_the_pull_early(tmp_path: pathlib.Path) -> None:
    ids = demo_login_ids(500, seed=47)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    env = {**os.environ, "FLINKS_CUSTOMER_ID": "43387ca6-0391-4c82-857d-70d95f087ecb"}
    with anyio.fail_after(30):  # 500 logins x 4 attempts with backoff would take minutes
        proc = await anyio.run_process(
            [
                *CLI,
                "pull",
                "--login-ids",
                "ids.txt",
                "--out",
                "out.jsonl",
                "--base-url",
                f"http://127.0.0.1:{_closed_port()}",
            ],
            env=env,
            cwd=tmp_path,
            check=False,
        )
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "flinks-async: error: 127.0.0.1 never answered: 20 connection attempts" in err
    assert "check base_url" in err and "Traceback" not in err
    # stopped at once, not churned through 500 logins; the summary says what the file holds
    written = written_lines(tmp_path / "out.jsonl")
    assert len(written) < len(ids)
    assert f"flinks-async pull: 0 ok, {len(written)} failed;" in err
    assert err.count("never answered") == 1


async def test_resume_matches_long_and_odd_ids_exactly(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    """Ids longer than 64 characters, or with quotes and backslashes (all malformed, so
    failed): the file is read as JSON, not with a pattern, so resume recognises them."""
    odd = ["x" * 70, 'a"b', "back\\slash", "ünïcode"]
    ids = [*demo_login_ids(2, seed=48), *odd]
    assert (await _pull(emu, tmp_path, ids=ids)).returncode == 1
    before = (tmp_path / "out.jsonl").read_bytes()
    proc = await _pull(emu, tmp_path, "--resume", "--skip-failed", ids=ids)
    assert proc.returncode == 1, proc.stderr.decode()
    assert "2 skipped" in first_line(proc.stderr) and "4 failed before and skipped" in first_line(
        proc.stderr
    )
    assert (tmp_path / "out.jsonl").read_bytes() == before
    recorded = {msgspec.json.decode(line)["login_id"] for line in before.splitlines()}
    assert recorded == set(ids)


def polls_of(emu: Emulator, login_id: str) -> int:
    return sum(1 for r in emu.requests if r.login_id == login_id)


async def test_a_slow_id_producer_does_not_freeze_the_polls(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    """`pull --login-ids -` fed one id, then nothing for a while: the first login keeps
    being polled on schedule in the meantime (the read is off the event loop)."""
    first, second = demo_login_ids(2, seed=49)
    emu.set_login(first, pending=40)
    emu.set_login(second, pending=0)
    async with await anyio.open_process(
        [*CLI, "pull", "--login-ids", "-", "--out", "out.jsonl", "--poll-interval", "0.02"],
        env=_env(emu, tmp_path),
        cwd=tmp_path,
    ) as proc:
        assert proc.stdin is not None
        await proc.stdin.send(first.encode() + b"\n")
        with anyio.fail_after(15):
            await wait_until(lambda: polls_of(emu, first) >= 3, timeout=15)
            start = polls_of(emu, first)
            await anyio.sleep(0.5)  # the producer is silent for 0.5 s: 25 poll intervals
            during = polls_of(emu, first) - start
            await proc.stdin.send(second.encode() + b"\n")
            await proc.stdin.aclose()
            await proc.wait()
    assert during >= 10, f"only {during} polls while the producer was silent"
    assert proc.returncode == 0
    assert {x["login_id"] for x in _lines(tmp_path / "out.jsonl")} == {first, second}


def test_every_cli_option_has_help_and_shows_its_default() -> None:
    parser = _parser()
    assert "``" not in (parser.description or "")
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        help_text = sub.format_help()
        assert "``" not in help_text, name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings} has no help"
            if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
                assert "(default:" in help_text.split(action.option_strings[-1], 1)[1], (
                    f"{name} {action.option_strings} does not show its default"
                )
    emulator_help = subparsers.choices["serve-emulator"].format_help()
    assert "FLINKS_EMULATOR_API_KEY" in emulator_help and "GUID" in emulator_help


async def test_an_unwritable_output_is_one_line(emu: Emulator, tmp_path: pathlib.Path) -> None:
    (tmp_path / "ids.txt").write_text(demo_login_ids(1)[0] + "\n")
    (tmp_path / "a_directory").mkdir()
    proc = await anyio.run_process(
        [*CLI, "pull", "--login-ids", "ids.txt", "--out", "a_directory"],
        env=_env(emu, tmp_path),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert first_line(proc.stderr) == "flinks-async: error: a_directory: Is a directory"
    assert len(proc.stderr.splitlines()) == 1 and emu.requests_total == 0


@pytest.mark.parametrize(
    ("wrong", "hint", "lines_at_most"),
    [
        ("FLINKS_SECRET_KEY", "check secret_key", 0),  # the token endpoint: no login involved
        ("FLINKS_API_KEY", "check api_key", 2),  # Authorize 401: 3 different logins trip it
        ("FLINKS_BASE_URL", "does not exist", 2),  # /v3 twice: a 404 without a FlinksCode
        ("FLINKS_CUSTOMER_ID", "Unknown customer", 0),
    ],
)
async def test_a_wrong_key_or_url_stops_the_pull_at_once(
    emu: Emulator, tmp_path: pathlib.Path, wrong: str, hint: str, lines_at_most: int
) -> None:
    """It sent 1,500 requests for 1,500 logins and wrote 1,500 UNAUTHORIZED lines: against
    real Flinks with 100,000 logins, 100,000 calls with a bad key."""
    ids = demo_login_ids(1500, seed=49)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    env = _env(emu, tmp_path)
    env[wrong] = {
        "FLINKS_BASE_URL": emu.url + "/v3",
        "FLINKS_CUSTOMER_ID": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
    }.get(wrong, "wrong-key-0000")
    proc = await anyio.run_process(
        [*CLI, "pull", "--login-ids", "ids.txt", "--out", "out.jsonl", "--concurrency", "50"],
        env=env,
        cwd=tmp_path,
        check=False,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.count("flinks-async: error: set-up error:") == 1 and hint in err, err
    assert "wrong-key-0000" not in err and "Traceback" not in err
    # no line for a login never tried; at most the two that answered before the third
    written = written_lines(tmp_path / "out.jsonl")
    assert len(written) <= lines_at_most
    # what reached the server: the first requests (token, Authorize, data call) of the 50
    # logins in flight and of the logins that took the slots of those that failed before
    # the breaker tripped (one per line written; how many is up to the machine's speed),
    # none for the ~1,450 others
    assert emu.requests_total <= 3 * (50 + len(written)), emu.counts
    assert all(not msgspec.json.decode(line)["ok"] for line in written)
    assert f"flinks-async pull: 0 ok, {len(written)} failed;" in err


@pytest.mark.parametrize("content", [b"", b"\n\n", b"# a comment\n   \n"])
async def test_an_ids_file_without_ids_is_a_usage_error(
    emu: Emulator, tmp_path: pathlib.Path, content: bytes
) -> None:
    (tmp_path / "ids.txt").write_bytes(content)
    proc = await _pull(emu, tmp_path)
    assert proc.returncode == 2
    assert first_line(proc.stderr) == (
        f"flinks-async: error: {tmp_path / 'ids.txt'}: no login ids (every line is blank or "
        "a # comment)"
    )
    assert not (tmp_path / "out.jsonl").exists() and emu.requests_total == 0


async def test_no_ids_on_standard_input_is_a_usage_error(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    proc = await anyio.run_process(
        [*CLI, "pull", "--login-ids", "-", "--out", str(tmp_path / "out.jsonl")],
        input=b"\n# nothing\n",
        env=_env(emu, tmp_path),
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines()[-1] == "flinks-async: error: -: no login ids"


async def test_the_summary_counts_repeats_and_says_already_ok_only_when_true(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    ids = demo_login_ids(4, seed=50)
    repeated = [*ids, ids[0], ids[1].upper(), ids[0]]
    first = await _pull(emu, tmp_path, ids=repeated)
    summary = first.stderr.decode()
    assert first.returncode == 0, summary
    assert "flinks-async pull: 4 ok, 0 failed; 3 repeated ids skipped;" in summary
    assert "already ok" not in summary  # no --resume: nothing was skipped for that
    assert len((tmp_path / "out.jsonl").read_bytes().splitlines()) == 4
    again = await _pull(emu, tmp_path, "--resume", ids=ids)
    assert f"0 ok, 0 failed; 4 skipped (already ok in {tmp_path / 'out.jsonl'});" in (
        again.stderr.decode()
    )
    stdout = await _pull(emu, tmp_path, "--out", "-", ids=ids[:2])
    assert "already ok" not in stdout.stderr.decode()


async def test_resume_says_which_logins_failed_before(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    """It said "4 ok, 2 failed, 2 of them failed before" when the 2 earlier failures had
    succeeded and the 2 failures were other logins: each count now says its own."""
    ids = demo_login_ids(10, seed=51)
    for login in ids[:2]:
        emu.set_login(login, faults=["INVALID_LOGIN@data"])
    first = await _pull(emu, tmp_path, ids=ids[:6])  # a first run that covered 6 logins
    assert first.returncode == 1
    assert "flinks-async pull: 4 ok, 2 failed;" in first_line(first.stderr)
    for login in ids[:2]:  # fixed at Flinks' end; two logins the first run never saw fail
        emu.set_login(login)
    for login in ids[6:8]:
        emu.set_login(login, faults=["INVALID_LOGIN@data"])
    again = await _pull(emu, tmp_path, "--resume", ids=ids)
    assert again.returncode == 1
    assert first_line(again.stderr).startswith(
        "flinks-async pull: 4 ok (2 of them failed before), 2 failed (none of them failed "
        "before); 4 skipped (already ok in"
    ), again.stderr.decode()
    emu.set_login(ids[6])  # one fixed, one not
    emu.set_login(ids[7], faults=["INVALID_LOGIN@data"])
    third = await _pull(emu, tmp_path, "--resume", ids=ids)
    assert third.returncode == 1
    assert first_line(third.stderr).startswith(
        "flinks-async pull: 1 ok (1 of them failed before), 1 failed (1 of them failed "
        "before); 8 skipped"
    ), third.stderr.decode()
    last = {str(x["login_id"]): x["ok"] for x in _lines(tmp_path / "out.jsonl")}
    assert [login for login in ids if not last[login]] == [ids[7]]


def final_progress(stderr: bytes) -> str:
    """The last progress line ``--progress on`` printed (one every 10 s, and the final)."""
    lines = stderr.decode().splitlines()
    return [line for line in lines if re.match(r"\d+(/\d+| done) ", line)][-1]


async def test_the_progress_total_counts_what_this_run_pulls(
    emu: Emulator, tmp_path: pathlib.Path
) -> None:
    """The total is counted from the file before the pull: without the logins --resume
    skips, and without repeats (the fan-out pulls a login once), so it ends at N/N."""
    ids = demo_login_ids(6, seed=52)
    first = await _pull(emu, tmp_path, "--progress", "on", ids=[*ids[:2], ids[0].upper()])
    assert first.returncode == 0
    assert final_progress(first.stderr).startswith("2/2  ETA 0:00  ok 2  failed 0  [#")
    again = await _pull(emu, tmp_path, "--resume", "--progress", "on", ids=ids)
    assert again.returncode == 0
    final = final_progress(again.stderr)
    assert final.startswith("4/4  ETA 0:00  ok 4  failed 0  [####"), final
    assert "4 ok, 0 failed; 2 skipped" in again.stderr.decode()


@pytest.mark.parametrize("existing", [None, b"precious\n"], ids=["new file", "--overwrite"])
async def test_a_set_up_error_leaves_no_empty_output(
    emu: Emulator, tmp_path: pathlib.Path, existing: bytes | None
) -> None:
    """A wrong secret key stops the pull before any line: the output file it would have
    created is not left behind empty, and --overwrite leaves the old file as it was."""
    (tmp_path / "ids.txt").write_text("\n".join(demo_login_ids(20, seed=53)) + "\n")
    out = tmp_path / "out.jsonl"
    if existing is not None:
        out.write_bytes(existing)
    env = {**_env(emu, tmp_path), "FLINKS_SECRET_KEY": "wrong-key-0000"}
    proc = await anyio.run_process(
        [*CLI, "pull", "--login-ids", "ids.txt", "--out", "out.jsonl", "--overwrite"],
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "set-up error" in proc.stderr.decode()
    if existing is None:
        assert sorted(os.listdir(tmp_path)) == ["ids.txt"], f"{out} left behind empty"
    else:
        assert out.read_bytes() == existing
