"""The live progress line in a real terminal (tmux): one line that fits, at any width.

Each test runs ``flinks-async demo`` in a detached tmux window of a given size and reads
the screen (``capture-pane``) every 20 ms until the demo ends: the screen must never hold
more than one progress line, and nothing on it may be wider than the window.
"""

from __future__ import annotations

import os
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

    def close(self) -> None:
        self("kill-server", check=False)


def watch(tmux: Tmux, cols: int, *, resize_to: int | None = None) -> list[str]:
    """Sample the screen until the demo has printed its exit status; check every frame."""
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
    finally:
        tmux.close()
    text = "\n".join(screen)
    assert "summary" in text and "succeeded" in text
    final = [line for line in screen if PROGRESS.search(line)]
    assert len(final) == 1 and "200/200" in final[0]


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
