"""Progress of a fan-out: counters fed by events, and a one-line live display on stderr."""

from __future__ import annotations

import collections
import sys
import time
from typing import TextIO

import anyio

from ._events import Event

__all__ = ["Progress"]


class Progress:
    """Counts what a fan-out does; :meth:`hook` is an event hook, :meth:`run` draws a bar.

    The bar is drawn only when ``stream`` is a terminal (or ``force=True``), at most
    ``fps`` times a second, on one line rewritten with ``\\r``.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        fps: float = 8.0,
    ) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.interval = 1.0 / fps
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

    def line(self) -> str:
        """The progress line: bar, done/failed/in flight, polls, retries, requests/s."""
        now = time.monotonic()
        if now - self._last_time >= 0.5:
            self._rate = (self.requests - self._last_requests) / (now - self._last_time)
            self._last_requests, self._last_time = self.requests, now
        elapsed = now - self.started_at
        rate = self._rate or (self.requests / elapsed if elapsed > 0 else 0.0)
        if self.total:
            width = 24
            filled = int(width * self.done / self.total)
            head = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
        else:
            head = f"{self.done} done"
        return (
            f"{head}  ok {self.ok}  failed {self.failed}  in flight {self.in_flight}  "
            f"pending polls {self.polls}  retries {self.retries}  {rate:,.0f} req/s  "
            f"{elapsed:5.1f}s"
        )

    async def run(self) -> None:
        """Redraw until cancelled (then draw the final line and end it)."""
        if not self.enabled:
            await anyio.sleep_forever()
        try:
            while True:
                self.stream.write("\r" + self.line() + "\x1b[K")
                self.stream.flush()
                await anyio.sleep(self.interval)
        finally:
            self.stream.write("\r" + self.line() + "\x1b[K\n")
            self.stream.flush()
