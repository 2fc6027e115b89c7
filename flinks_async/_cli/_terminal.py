"""What ``pull`` and ``demo`` show on a terminal: live progress (``--progress``) and
summaries broken to the terminal's width (:func:`fit`)."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import TextIO

from ._progress import Progress

__all__ = ["add_progress", "fit", "progress_display"]


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        choices=["auto", "on", "off"],
        default="auto",
        help="live progress on stderr (auto: when stderr is a terminal)",
    )


def progress_display(mode: str, total: int | None) -> Progress:
    """The live display of ``--progress MODE`` (auto: when stderr is a terminal)."""
    return Progress(total, enabled=None if mode == "auto" else mode == "on")


def fit(text: str, *, indent: str = "  ", stream: TextIO | None = None) -> str:
    """``text`` broken at spaces to the width of the terminal ``stream`` (stderr) is, with
    ``indent`` before each continuation; as it is when the stream is not a terminal (a log
    file keeps one line per summary)."""
    stream = sys.stderr if stream is None else stream
    try:
        if not stream.isatty():
            return text
        width = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return text
    width = max(width - 1, 20)  # the last column would wrap on some terminals
    return textwrap.fill(
        text,
        width,
        subsequent_indent=indent if len(indent) < width // 2 else "  ",
        break_on_hyphens=False,
        drop_whitespace=True,
    )
