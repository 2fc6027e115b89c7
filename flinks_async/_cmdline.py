"""What the package's two command lines share: ``flinks-async`` (:mod:`flinks_async._cli`)
and ``python -m flinks_async.testing`` (the emulator as a server).

argparse with one-line usage errors and every default in ``--help``; number types with
bounds; ``--loop``; secrets read from a file or the environment, never from the command
line; and :func:`interruptible`, which turns SIGINT/SIGTERM into a clean stop and exit
status 130.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import anyio

__all__ = [
    "COUNT",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "SECONDS",
    "Parser",
    "UsageError",
    "add_loop",
    "interruptible",
    "loop_name",
    "loop_options",
    "number",
    "read_secret",
]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """A command-line usage or input error: one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and ``--help`` shows every default)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number(kind: Callable[[str], Any], minimum: float, *, strict: bool = False) -> Any:
    """An argparse type: ``kind`` (int/float) at least ``minimum`` (above it if ``strict``)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum or (strict and value == minimum) or value != value:
            bound = f"> {minimum}" if strict else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


COUNT = number(int, 1)
SECONDS = number(float, 0, strict=True)


def add_loop(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop (auto: uvloop when installed, from flinks-async[speed]; about 10%% "
        "less CPU per request)",
    )


def loop_options(choice: str) -> dict[str, Any]:
    """anyio.run's backend_options for ``--loop`` (a usage error when uvloop is asked for
    and missing)."""
    if choice == "asyncio":
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise UsageError(
                "--loop uvloop: uvloop is not installed (pip install 'flinks-async[speed]')"
            ) from None
        return {}
    return {"use_uvloop": True}


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the running event loop's kind."""
    return (
        "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
    )


def read_secret(path: str | None, env: str) -> str | None:
    """The secret in the file ``path`` (stripped), else in the variable ``env``, else None:
    never from the command line, which other users of the machine can read."""
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    return os.environ.get(env) or None


async def interruptible(command: Any, args: argparse.Namespace) -> int:
    """Run ``command``; SIGINT/SIGTERM cancel it cleanly and give exit status 130."""
    result = EXIT_INTERRUPTED
    error: list[Exception] = []
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    print("\nflinks-async: interrupted, stopping...", file=sys.stderr)
                    tg.cancel_scope.cancel()
                    return

        async def run() -> None:
            nonlocal result
            try:
                result = await command(args)
            except Exception as exc:  # raised bare below, not in an ExceptionGroup
                error.append(exc)
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        tg.start_soon(run)
    if error:
        raise error[0]
    return result
