"""The live progress line in a real terminal (tmux): one line that fits, at any width.

Each test runs ``flinks-async demo`` in a detached tmux window of a given size and reads
the screen (``capture-pane``) every 20 ms until the demo ends: the screen must never hold
more than one progress line, and nothing on it may be wider than the window.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

PROGRESS = re.compile(r"\b\d+/200\b")  # "37/200": only the progress line has it


class Tmux:
    """A private tmux server (its own socket) with one window running ``command``."""

    def __init__(self, command: str, cols: int, rows: int = 30) -> None:
        self.socket = f"flinks-async-test-{os.getpid()}-{time.monotonic_ns()}"
        self(
            "new-session", "-d", "-s", "demo", "-x", str(cols), "-y", str(rows),
            "-e", f"PYTHONPATH={os.getcwd()}", command,
        )  # fmt: skip
        self("set-option", "-t", "demo", "window-size", "manual")
        self("set-option", "-t", "demo", "remain-on-exit", "on")

    def __call__(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=check
        )
        return done.stdout

    def screen(self) -> list[str]:
        return self("capture-pane", "-p", "-t", "demo").splitlines()

    def logical_lines(self) -> list[str]:
        """The screen with the lines the terminal wrapped joined back (``-J``): a line
        that did not fit is longer than the window here."""
        return self("capture-pane", "-p", "-J", "-S", "-", "-t", "demo").splitlines()

    def close(self) -> None:
        self("kill-server", check=False)


def watch(
    tmux: Tmux, cols: int, *, resize_to: int | None = None, seen: list[str] | None = None
) -> list[str]:
    """Sample the screen until the demo has printed its exit status; check every frame
    (and keep its progress line in ``seen``)."""
    frames_with_progress = 0
    deadline = time.monotonic() + 60
    resized = False
    while time.monotonic() < deadline:
        screen = tmux.screen()
        progress = [line for line in screen if PROGRESS.search(line)]
        assert len(progress) <= 1, "a stack of progress lines:\n" + "\n".join(screen)
        wide = [line for line in screen if len(line.rstrip()) > cols]
        assert not wide, f"wider than {cols} columns: {wide}"
        frames_with_progress += bool(progress)
        if seen is not None:
            seen += progress
        if any("DEMO-EXIT=" in line for line in screen):
            assert "DEMO-EXIT=0" in "\n".join(screen)
            assert frames_with_progress >= 3, "the live line was never seen"
            return screen
        if resize_to is not None and not resized and frames_with_progress >= 3:
            tmux("resize-window", "-t", "demo", "-x", str(resize_to))
            cols, resized = resize_to, True
            time.sleep(0.2)  # let the next refresh redraw at the new width
        time.sleep(0.02)
    raise AssertionError("the demo did not finish:\n" + "\n".join(tmux.screen()))


def demo(python_prelude: str = "") -> str:
    args = "['demo', '--logins', '200', '--concurrency', '10', '--poll-interval', '0.05']"
    code = f"{python_prelude}from flinks_async._cli import main; raise SystemExit(main({args}))"
    return f'{sys.executable} -c "{code}"; echo DEMO-EXIT=$?'


@pytest.mark.parametrize("cols", [60, 80, 200])
def test_one_progress_line_that_fits_the_terminal(cols: int) -> None:
    tmux = Tmux(demo(), cols)
    try:
        screen = watch(tmux, cols)
        tmux_lines = tmux.logical_lines()
    finally:
        tmux.close()
    text = "\n".join(screen)
    assert "summary" in text and "succeeded" in text
    final = [line for line in screen if PROGRESS.search(line)]
    assert len(final) == 1 and "200/200" in final[0]
    # the header and the summary fit too: nothing was wrapped by the terminal
    wrapped = [line for line in tmux_lines if len(line.rstrip()) > cols]
    assert not wrapped, f"wrapped at {cols} columns: {wrapped}"


def test_a_resized_terminal_still_shows_one_line() -> None:
    tmux = Tmux(demo(), 200)
    try:
        watch(tmux, 200, resize_to=60)
    finally:
        tmux.close()


def test_without_rich_the_plain_line_fits_too() -> None:
    tmux = Tmux(demo("import sys; sys.modules['rich'] = None; "), 80)
    try:
        screen = watch(tmux, 80)
    finally:
        tmux.close()
    assert "summary" in "\n".join(screen)


def test_the_pull_summary_fits_a_narrow_terminal(tmp_path: pathlib.Path) -> None:
    """The pull's final summary (and its failure lines) broken at spaces to 60 columns,
    where the terminal used to wrap it mid-word; in a file it stays one line."""
    from flinks_async.testing import demo_login_ids

    from .conftest import free_port

    ids = demo_login_ids(40, seed=61)
    (tmp_path / "ids.txt").write_text("\n".join([*ids, ids[0], ids[1]]) + "\n")
    port = free_port()
    python = sys.executable
    command = (
        f"cd {tmp_path}; {python} -m flinks_async serve-emulator --port {port} "
        f"--fault-rate INVALID_LOGIN@data=0.3 --seed 4 2>/dev/null & "
        f"{python} -c 'import socket,time\nfor _ in range(600):\n try: "
        f'socket.create_connection(("127.0.0.1",{port})).close(); break\n '
        f"except OSError: time.sleep(0.05)'; "
        f"FLINKS_CUSTOMER_ID=43387ca6-0391-4c82-857d-70d95f087ecb "
        f"{python} -m flinks_async pull --login-ids ids.txt --out out.jsonl "
        f"--base-url http://127.0.0.1:{port} --poll-interval 0.01 --progress off; "
        f"echo DEMO-EXIT=$?; kill %1"
    )
    tmux = Tmux(command, 60)
    try:
        deadline = time.monotonic() + 120
        while not any("DEMO-EXIT=" in line for line in tmux.screen()):
            assert time.monotonic() < deadline, "\n".join(tmux.screen())
            time.sleep(0.05)
        lines = tmux.logical_lines()
    finally:
        tmux.close()
    text = "\n".join(lines)
    words = " ".join(text.split())  # broken at spaces, so the words read the same
    assert "flinks-async pull: 30 ok, 10 failed; 2 repeated ids skipped;" in words, text
    assert "failed: INVALID_LOGIN" in text, text
    wrapped = [line for line in lines if len(line.rstrip()) > 60]
    assert not wrapped, f"wrapped at 60 columns: {wrapped}"


def _pull_in_a_terminal(tmp_path: pathlib.Path, ids: list[str], emulator: str, pull: str) -> str:
    """A shell line: serve the emulator, wait for its port, pull ``ids`` from it."""
    from .conftest import free_port

    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    port = free_port()
    python = sys.executable
    return (
        f"cd {tmp_path}; {python} -m flinks_async serve-emulator --port {port} "
        f"{emulator} 2>/dev/null & "
        f"{python} -c 'import socket,time\nfor _ in range(600):\n try: "
        f'socket.create_connection(("127.0.0.1",{port})).close(); break\n '
        f"except OSError: time.sleep(0.05)'; "
        f"FLINKS_CUSTOMER_ID=43387ca6-0391-4c82-857d-70d95f087ecb "
        f"{python} -m flinks_async pull --login-ids ids.txt --out out.jsonl "
        f"--base-url http://127.0.0.1:{port} {pull}; "
        f"echo DEMO-EXIT=$?; kill %1"
    )


def test_pull_from_a_file_shows_the_total_the_eta_and_the_bar(tmp_path: pathlib.Path) -> None:
    """`pull --login-ids FILE` counts the file's ids before it starts: its live line at 80
    columns reads done/total with an ETA and a bar, as `demo`'s does (it read "37 done")."""
    from flinks_async.testing import demo_login_ids

    command = _pull_in_a_terminal(
        tmp_path,
        demo_login_ids(200, seed=62),
        "--pending 2",
        "--concurrency 10 --poll-interval 0.05",
    )
    tmux = Tmux(command, 80)
    seen: list[str] = []
    try:
        watch(tmux, 80, seen=seen)
        lines = tmux.logical_lines()  # the whole output: the screen may have scrolled
    finally:
        tmux.close()
    line = re.compile(r"(\d+)/200  ETA \d+:\d\d  ok \d+  failed 0  \[(#*)(\.*)\]  in flight")
    midway = [m for m in map(line.match, seen) if m and 0 < int(m[1]) < 200]
    assert midway, "no live line with the total, an ETA and a bar:\n" + "\n".join(seen)
    assert all(len(m[2] + m[3]) >= 10 and m[3] for m in midway)  # a bar partly filled
    final = [line for line in lines if PROGRESS.search(line)]
    assert len(final) == 1 and final[0].startswith("200/200  ETA 0:00  ok 200  failed 0  ["), lines
    assert re.search(r"\[#{10,}\]", final[0]), final  # the bar, full
