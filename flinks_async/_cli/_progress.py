"""Progress of a fan-out: counters fed by events, and one live line on stderr that fits.

The line is built to the terminal's width at every refresh (:meth:`Progress.line`),
fields dropped by priority, lowest first::

    done/total  ETA  ok  failed  [bar]  in flight  polls  retries  req/s  elapsed

(the bar only with a total: dropped after in flight, 12 to 32 columns wide), so an
80-column terminal (or a 60-column split, or a window resized mid-run) shows one
line updated in place, never a stack of wrapped ones. The drawing itself, in place and
across resizes, is rich's (``pip install 'flinks-async[cli]'``: :class:`rich.live.Live`).
Without rich, a plain ``\\r`` line cut to the current width. When the terminal shrinks,
the rows the old line was reflowed onto are erased before the redraw. When stderr is not a
terminal there is no live line; ``enabled=True`` (``--progress on``) then prints a plain
line every ``log_every`` seconds instead, for logs.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from typing import Any, TextIO

import anyio

from .._events import Event

__all__ = ["Progress"]

_BAR_MIN = 12  #: columns of the narrowest bar drawn, brackets included
_BAR_MAX = 32  #: and of the widest


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts what a fan-out does; :meth:`hook` is an event hook, :meth:`run` draws it.

    Args:
        total: logins expected, when known (for the bar and the ETA).
        stream: where to draw (stderr).
        enabled: ``None`` (default): a live line only when ``stream`` is a terminal;
            ``True``: always (plain lines when it is not a terminal); ``False``: never.
        fps: live refreshes per second (8).
        log_every: seconds between plain lines when ``stream`` is not a terminal (10).
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        fps: float = 8.0,
        log_every: float = 10.0,
    ) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.enabled = self.tty if enabled is None else enabled
        self.interval = 1.0 / fps
        self.log_every = log_every
        self.started_at = time.monotonic()
        self.started = 0
        self.ok = 0
        self.failed = 0
        self.polls = 0
        self.retries = 0
        self.requests = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self._last_requests = 0
        self._last_time = self.started_at
        self._rate = 0.0
        self._drawn = 0  # length of the line last drawn (for a shrinking terminal)

    @property
    def done(self) -> int:
        return self.ok + self.failed

    @property
    def in_flight(self) -> int:
        return self.started - self.done

    def hook(self, event: Event) -> None:
        """Count one event (give this to ``on_event``)."""
        kind = event.kind
        if kind == "request":
            self.requests += 1
        elif kind == "pending":
            self.polls += 1
        elif kind == "retry":
            self.retries += 1
        elif kind == "started":
            self.started += 1
        elif kind == "done":
            if event.error is None:
                self.ok += 1
            else:
                self.failed += 1
                self.errors[type(event.error).__name__] += 1

    def eta(self) -> float | None:
        """Seconds left at the pace so far (``None`` without a total or a first result)."""
        if not self.total or not self.done:
            return None
        elapsed = time.monotonic() - self.started_at
        return max(0.0, (self.total - self.done) * elapsed / self.done)

    def line(self, width: int = 80) -> str:
        """The progress line, at most ``width`` characters: fields by priority."""
        now = time.monotonic()
        if now - self._last_time >= 0.5:
            self._rate = (self.requests - self._last_requests) / (now - self._last_time)
            self._last_requests, self._last_time = self.requests, now
        elapsed = now - self.started_at
        rate = self._rate or (self.requests / elapsed if elapsed > 0 else 0.0)
        eta = self.eta()
        count = f"{self.done}/{self.total}" if self.total else f"{self.done} done"
        # (priority, position, text): the lowest priority goes first when space runs out;
        # the bar (with a total) ranks after ok / failed and before in flight, drawn at
        # _BAR_MIN columns while fields are dropped, then widened into what is left
        fields = [
            (9.0, 0, count),
            (8.0, 1, f"ETA {_duration(eta)}" if eta is not None else ""),
            (7.0, 2, f"ok {self.ok}"),
            (6.0, 3, f"failed {self.failed}"),
            (5.5, 4, "#" * _BAR_MIN if self.total else ""),
            (5.0, 5, f"in flight {self.in_flight}"),
            (3.0, 6, f"polls {self.polls}"),
            (2.0, 7, f"retries {self.retries}"),
            (1.0, 8, f"{rate:,.0f} req/s"),
            (0.0, 9, _duration(elapsed)),
        ]
        kept = sorted((f for f in fields if f[2]), key=lambda f: f[1])
        while True:
            text = "  ".join(t for _, _, t in kept)
            if len(text) <= width or len(kept) == 1:
                break
            kept.remove(min(kept, key=lambda f: f[0]))
        if self.total and any(pos == 4 for _, pos, _ in kept):
            inner = min(_BAR_MAX, _BAR_MIN + max(0, width - len(text))) - 2
            filled = min(inner, int(inner * self.done / self.total))
            bar = f"[{'#' * filled}{'.' * (inner - filled)}]"
            text = "  ".join(bar if pos == 4 else t for _, pos, t in kept)
        return text[:width]

    def width(self, fallback: int = 80) -> int:
        """Columns of the terminal ``stream`` is on, read now (it follows resizes). Not
        ``COLUMNS``: an exported value goes stale when the window is resized."""
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return fallback

    async def run(self) -> None:
        """Draw until cancelled, then draw the final line."""
        if not self.enabled:
            await anyio.sleep_forever()
        if not self.tty:
            await self._run_plain()
        try:
            from rich.console import Console
        except ImportError:
            await self._run_carriage_return()
        else:
            await self._run_rich(Console(file=self.stream))

    def _stale_rows(self, width: int) -> int:
        """Rows, above the cursor, that the last line now spans after the terminal shrank.

        Terminals that reflow on resize (tmux, VTE, iTerm2, kitty, Windows Terminal...)
        wrap the line drawn at the old width onto several rows, and an in-place redraw only
        rewrites the last of them: the rest would stay as a stack of old lines. (A terminal
        that truncates instead, like xterm, loses one line above the bar on a shrink.)"""
        drawn, self._drawn = self._drawn, 0
        return max(0, -(-drawn // max(width, 1)) - 1)

    async def _run_rich(self, console: Any) -> None:
        from rich.control import Control
        from rich.live import Live
        from rich.segment import ControlType
        from rich.text import Text

        def render() -> Text:
            width = self.width(console.width)
            stale = self._stale_rows(width)
            if stale:
                erase_up = [Control((ControlType.ERASE_IN_LINE, 2)), Control.move(0, -1)]
                console.control(*(erase_up * stale))
            text = self.line(width - 1)  # the last column would wrap on some terminals
            self._drawn = len(text)
            return Text(text, no_wrap=True, overflow="ellipsis")

        with Live(render(), console=console, auto_refresh=False, transient=False) as live:
            try:
                while True:
                    live.update(render(), refresh=True)  # the width is read at each refresh
                    await anyio.sleep(self.interval)
            finally:
                live.update(render(), refresh=True)

    async def _run_carriage_return(self) -> None:
        def draw(end: str = "") -> None:
            width = self.width()
            stale = self._stale_rows(width)
            text = self.line(width - 1)  # writing the last column would wrap
            self._drawn = len(text)
            self.stream.write("\x1b[2K\x1b[1A" * stale + "\r\x1b[2K" + text + end)
            self.stream.flush()

        try:
            while True:
                draw()
                await anyio.sleep(self.interval)
        finally:
            draw("\n")

    async def _run_plain(self) -> None:
        try:
            while True:
                await anyio.sleep(self.log_every)
                print(self.line(120), file=self.stream, flush=True)
        finally:
            print(self.line(120), file=self.stream, flush=True)
