"""The ``flinks-async`` command line (also ``python -m flinks_async``); one module per
command family.

``demo`` (:mod:`._demo`)  pull a realistic batch from the built-in emulator, with live progress.
``pull`` (:mod:`._pull`)  bulk-pull real logins into JSONL; ``--resume`` continues a stopped job.
``serve-emulator``       run the emulator as a standalone server (:mod:`flinks_async.testing`).
``serve-webhooks`` (:mod:`._webhooks`)  receive Flinks' webhooks into Redis for pulls and workers.
``enqueue``, ``worker``, ``collect``, ``status``, ``purge`` (:mod:`._queue`): the distributed pull.

Credentials come from ``FLINKS_API_KEY`` / ``FLINKS_SECRET_KEY`` or from files
(``--api-key-file``, ``--secret-key-file``), never from the command line, which other
users of the machine can read. Progress goes to stderr (only when it is a terminal),
data to stdout or ``--out``. What the command lines share is in
:mod:`flinks_async._cmdline`.
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
from collections.abc import Sequence

import anyio

from .._cmdline import EXIT_INTERRUPTED, EXIT_USAGE, Parser, UsageError, interruptible, loop_options
from .._errors import FlinksError
from .._version import __version__
from ..testing import _serve
from . import _demo, _pull, _queue, _webhooks
from ._pull import EXIT_FAILED_LOGINS
from ._terminal import fit

__all__ = [
    "EXIT_FAILED_LOGINS",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "FULL_GC_EVERY",
    "UsageError",
    "fit",
    "main",
    "tune_gc",
]


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="flinks-async",
        description="flinks-async: pull Flinks data in bulk, try the client on the built-in "
        "emulator, or serve the emulator for your own tests.",
    )
    p.add_argument("--version", action="version", version=f"flinks-async {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    _demo.add_parser(sub)
    _pull.add_parser(sub)
    e = sub.add_parser(
        "serve-emulator", help="run the Flinks emulator as a server", description=_serve.DESCRIPTION
    )
    _serve.add_arguments(e)
    _webhooks.add_parser(sub)
    _queue.add_parsers(sub)
    return p


#: A full garbage collection at most every this many generation-1 collections, instead of
#: Python's 10. See :func:`tune_gc`.
FULL_GC_EVERY = 10_000


def tune_gc() -> None:
    """Set up Python's cyclic GC for many logins in flight, as ``pull``, ``demo`` and
    ``worker`` do (the recipe in docs/performance.md, "How many logins one process keeps
    in flight").

    Every login in flight holds about 35 objects the GC tracks, and a full collection walks
    all of them: 1.2-1.4 s at 50,000 in flight, every few seconds with Python's default
    thresholds. ``gc.freeze()`` puts what start-up built (modules, classes) out of its way;
    raising the third threshold from 10 to :data:`FULL_GC_EVERY` makes full collections
    rare: at 50,000 in flight 4-14 generation-1 collections run a second (measured), so at
    most one full collection every 12-43 minutes (young collections are unchanged, so
    short-lived cycles are still freed soon). Safe because a login leaves no reference cycle of ours
    behind (done, failed, retried or cancelled): what waits for a full collection is a few
    objects per closed connection (asyncio's transports). A process-wide choice: made by
    the command line, never by the library."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_GC_EVERY)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command in ("demo", "pull", "worker"):
        tune_gc()
    try:
        if args.command in _queue.COMMANDS:
            return _queue.run(args)
        loop = loop_options(args.loop)
        if args.command == "demo":
            return anyio.run(interruptible, _demo.run, args, backend_options=loop)
        if args.command == "pull":
            job = _pull.prepare(args)
            pull = functools.partial(_pull.run, job=job)
            return anyio.run(interruptible, pull, args, backend_options=loop)
        if args.command == "serve-webhooks":
            return anyio.run(interruptible, _webhooks.serve, args, backend_options=loop)
        return anyio.run(interruptible, _serve.serve, args, backend_options=loop)
    except (FlinksError, ValueError, OSError) as exc:  # NotOurs, UsageError, IdSourceError...
        message = (
            str(exc)
            if not isinstance(exc, OSError) or not exc.filename
            else (f"{exc.filename}: {exc.strerror}")
        )
        print(f"flinks-async: error: {message}", file=sys.stderr)
        return EXIT_USAGE
