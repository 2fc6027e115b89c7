"""The docs can't rot: every Python example in them is a file this suite runs."""

from __future__ import annotations

import ast
import os
import pathlib
import re
import runpy
import subprocess
import sys

import anyio
import pytest

from flinks_async.testing import Emulator, demo_login_ids

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
INCLUDE = re.compile(r'^--8<-- "([^"]+)"\s*$')
#: Files whose code the suite executes (directly below, or as the tested example apps).
EXECUTED = sorted((DOCS / "examples").glob("*.py")) + sorted((ROOT / "examples").glob("*.py"))


def _blocks(path: pathlib.Path) -> list[str]:
    return BLOCK.findall(path.read_text())


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_doc_pages_include_their_python_from_executed_files(page: pathlib.Path) -> None:
    for block in _blocks(page):
        m = INCLUDE.match(block.strip())
        assert m, f"{page.name}: inline python block; include a tested file instead"
        assert (ROOT / m[1]) in EXECUTED, f"{page.name}: {m[1]} is not an executed example"


def test_readme_python_blocks_are_excerpts_of_executed_files() -> None:
    sources = [p.read_text() for p in EXECUTED]
    blocks = _blocks(ROOT / "README.md")
    assert blocks
    for block in blocks:
        assert any(block in src for src in sources), (
            f"README block not from a tested file:\n{block}"
        )


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(python3 -m venv .*?)\n```", readme)
    assert len(commands) >= 2, "README keeps the demo and the test command at the top"
    assert "flinks-async demo" in commands[0] and "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize(
    "name",
    [
        "first_pull",
        "bulk_pull",
        "handling_errors",
        "metrics",
        "nightly",
        "scenarios",
        "typed_options",
        "webhooks_stream",
    ],
)
def test_docs_example_runs(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(DOCS / "examples" / f"{name}.py"))
    anyio.run(module["main"])
    out = capsys.readouterr().out
    if name == "first_pull":  # an account line, then its positions, indented
        assert re.match(r"\S.* [a-z]+ \d+\.\d+\n    [A-Z]+ \d+", out)
    elif name == "bulk_pull":
        assert re.fullmatch(r"200 logins, \d+ failed, \d+ pending polls\n", out)
        assert int(out.split(", ")[1].split()[0]) < 200
    elif name == "metrics":
        counts = ast.literal_eval(out.strip())
        assert counts["started"] == counts["done"] == 3 and counts["failed:LoginError"] == 1
        assert counts["request"] == counts["response"] >= 3 + counts["pending"]
    elif name == "nightly":  # some logins to re-link, each said, and only the others pulled
        *relinks, last = out.strip().splitlines()
        assert relinks and all(line.startswith("re-link ") for line in relinks)
        assert last == f"{50 - len(relinks)} pulled, {len(relinks)} to re-link; 3000 institutions"
    elif name == "scenarios":
        assert out.startswith("7 Investments requests; {'http_503': 1, 'RETRY_LATER': 1} faults")
    elif name == "webhooks_stream":
        assert re.fullmatch(r"10 calls ok, 10 deliveries handled once, \d+ attempts\n", out)
        assert int(out.split(", ")[2].split()[0]) > 10  # the faults made Flinks try again
    elif name == "typed_options":
        assert re.fullmatch(r"[1-9]\d* transactions\n", out)
    elif name == "handling_errors":
        lines = out.strip().splitlines()
        assert lines[0].endswith("accounts") and "reconnect (DISABLED_LOGIN)" in lines[1]
        assert "still processing" in lines[2] and lines[3] == "not a Flinks loginId"


@pytest.mark.parametrize(
    ("name", "needs", "output"),
    [
        ("with_uvloop", "uvloop", "20 logins pulled on uvloop\n"),
        (
            "many_in_flight",
            None,
            "500 logins pulled, a full collection at most every 10,000 middle ones\n",
        ),
    ],
)
def test_script_examples_run_as_scripts(name: str, needs: str | None, output: str) -> None:
    """Examples that set up the process (the event loop, the GC) run as scripts do."""
    if needs:
        pytest.importorskip(needs)
    proc = subprocess.run(
        [sys.executable, str(DOCS / "examples" / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == output


def test_users_pytest_example_passes_with_the_shipped_fixtures() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(DOCS / "examples" / "test_with_the_emulator.py"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_readme_example_runs_against_the_emulator() -> None:
    async def main() -> None:
        async with Emulator(pending=0) as emu:
            env = {
                **os.environ,
                "FLINKS_CUSTOMER_ID": "43387ca6-0391-4c82-857d-70d95f087ecb",
                "FLINKS_BASE_URL": emu.url,
                "LOGIN_IDS": ",".join(demo_login_ids(3)),
            }
            proc = await anyio.run_process(
                [sys.executable, str(DOCS / "examples" / "readme.py")], env=env, check=False
            )
            assert proc.returncode == 0, proc.stderr.decode()
            assert proc.stdout.decode().count(" ok") == 3

    anyio.run(main)


@pytest.mark.parametrize("command", ["demo", "pull", "serve-emulator", "serve-webhooks"])
def test_bulk_command_summaries_list_every_option(command: str) -> None:
    """docs/bulk.md's command-line summary names every option of each command, with its
    default where it has one (the webhook options of pull and serve-emulator were left
    out)."""
    import argparse

    from flinks_async._cli import _parser

    block = re.search(
        r"## The command line\n\n```sh\n(.*?)```", (DOCS / "bulk.md").read_text(), re.S
    )
    assert block, "docs/bulk.md lost its command-line summary"
    summaries = re.split(r"^(?=flinks-async )", block[1], flags=re.M)
    summary = next((s for s in summaries if s.startswith(f"flinks-async {command} ")), None)
    assert summary is not None, f"no summary of {command} in docs/bulk.md"
    written = set(re.findall(r"(--[a-z][a-z-]*)\b", summary))
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for action in sub.choices[command]._actions:
        names = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
        if not names or written.intersection(names):
            continue
        missing.append(names[0])
    assert not missing, f"docs/bulk.md's summary of {command} leaves out {missing}"
    for action in sub.choices[command]._actions:  # a default that is shown is the real one
        shown = re.search(rf"\[{re.escape(action.option_strings[-1])} (\d+(?:\.\d+)?)\]", summary)
        if shown and action.default is not None:
            assert float(shown[1]) == float(action.default), (command, shown[0])
