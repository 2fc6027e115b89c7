"""The ``flinks-async`` command line (also ``python -m flinks_async``).

``demo``            pull a realistic batch from the built-in emulator, with live progress.
``pull``            bulk-pull real logins into JSONL; ``--resume`` continues a stopped job.
``serve-emulator``  run the emulator as a standalone server.

Credentials come from ``FLINKS_API_KEY`` / ``FLINKS_SECRET_KEY`` or from files
(``--api-key-file``, ``--secret-key-file``), never from the command line, which other
users of the machine can read. Progress goes to stderr (only when it is a terminal),
data to stdout or ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import functools
import gc
import logging
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, BinaryIO, NoReturn, TextIO

import anyio

from ._client import FlinksClient
from ._errors import CoordinationError, FlinksError
from ._idsource import holds_ids, open_ids, read_ids
from ._jsonl import Output, ResumeState, cut_torn_tail, error_line, ok_line, scan
from ._polling import ENDPOINTS
from ._progress import Progress
from ._redact import shown_redis_url
from ._version import __version__

__all__ = ["main"]

EXIT_FAILED_LOGINS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEMO_CUSTOMER_ID = "43387ca6-0391-4c82-857d-70d95f087ecb"
#: Faults drawn per login by ``demo``: some retries, a few failing logins.
DEMO_FAULTS = {
    "http_503@data": 0.06,
    "reset": 0.03,
    "rate_limit:0@data": 0.03,
    "SESSION_NONEXISTENT@data": 0.02,
    "INVALID_LOGIN@data": 0.015,
    "DISABLED_LOGIN@authorize": 0.01,
}


class UsageError(ValueError):
    """A command-line usage or input error: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and ``--help`` shows every default)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: Callable[[str], Any], minimum: float, *, strict: bool = False) -> Any:
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


_COUNT = _number(int, 1)
_SECONDS = _number(float, 0, strict=True)


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        choices=["auto", "on", "off"],
        default="auto",
        help="live progress on stderr (auto: when stderr is a terminal)",
    )


def _add_loop(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop (auto: uvloop when installed, from flinks-async[speed]; about 10%% "
        "less CPU per request)",
    )


def _loop_options(choice: str) -> dict[str, Any]:
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


def _loop_name() -> str:
    """``uvloop`` or ``asyncio``: the running event loop's kind."""
    return (
        "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
    )


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="flinks-async",
        description="flinks-async: pull Flinks data in bulk, try the client on the built-in "
        "emulator, or serve the emulator for your own tests.",
    )
    p.add_argument("--version", action="version", version=f"flinks-async {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser(
        "demo",
        help="pull a batch from the built-in emulator, with live progress",
        description="Pull a batch of logins from the built-in Flinks emulator (started in "
        "this process, on 127.0.0.1) with pending polls, retries and a few failing logins.",
    )
    d.add_argument("--logins", type=_COUNT, default=300, help="logins to pull")
    d.add_argument("--concurrency", type=_COUNT, default=100, help="logins in flight")
    d.add_argument("--pending", type=_number(int, 0), default=2, help="202 answers before data")
    d.add_argument("--payload-bytes", type=_COUNT, default=20_000, help="payload size")
    d.add_argument("--poll-interval", type=_SECONDS, default=0.05, help="seconds between polls")
    d.add_argument("--no-faults", action="store_true", help="inject no faults")
    d.add_argument("--seed", type=int, default=1, help="seed of the login ids and faults")
    _add_progress(d)
    _add_loop(d)

    u = sub.add_parser(
        "pull",
        help="bulk-pull logins into JSONL",
        description="Pull one endpoint for every login id into JSONL, one line per login as "
        "results arrive. Exit status: 0 all ok, 1 some logins failed (their lines say why), "
        "2 usage or input error (nothing written), 130 interrupted.",
    )
    u.add_argument("--customer-id", help="your Flinks customer id (else FLINKS_CUSTOMER_ID)")
    u.add_argument(
        "--base-url", help="the Flinks instance (else FLINKS_BASE_URL, else the toolbox sandbox)"
    )
    u.add_argument("--api-key-file", help="file holding the API key (else FLINKS_API_KEY)")
    u.add_argument("--secret-key-file", help="file holding the secret key (else FLINKS_SECRET_KEY)")
    u.add_argument(
        "--login-ids", required=True, help="file with one loginId a line, or - for stdin"
    )
    u.add_argument(
        "--endpoint", choices=sorted(ENDPOINTS), default="investments", help="what to pull"
    )
    u.add_argument("--out", default="-", help="JSONL output file (mode 0600), or - for stdout")
    mode = u.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume",
        action="store_true",
        help="continue --out: skip logins already ok in it, pull again those whose last line "
        "is a failure, cut a torn last line (refuses a file that is not ours)",
    )
    mode.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty --out (else refused)"
    )
    u.add_argument(
        "--skip-failed",
        action="store_true",
        help="with --resume: do not pull again logins whose last line is a failure",
    )
    u.add_argument("--concurrency", type=_COUNT, default=50, help="logins in flight")
    u.add_argument(
        "--rate-limit",
        type=_number(float, 0, strict=True),
        help="at most N requests arrive at Flinks in any --rate-limit-window (a whole "
        "number, or below 1: one request per window/N); default no limit",
    )
    u.add_argument(
        "--rate-limit-window",
        type=_SECONDS,
        default=1.0,
        help="seconds the rate limit counts in",
    )
    u.add_argument("--poll-interval", type=_SECONDS, default=10.0, help="seconds between polls")
    u.add_argument(
        "--poll-timeout", type=_SECONDS, default=1800.0, help="seconds one login may take"
    )
    u.add_argument(
        "--unreachable-after",
        type=_number(int, 0),
        default=20,
        help="stop the pull (exit 2) when this many connection attempts in a row fail "
        "before Flinks ever answered (a wrong --base-url); 0 turns it off",
    )
    u.add_argument("--investments-url", help="full URL of /Investments (e.g. the wealth host)")
    _add_progress(u)
    _add_loop(u)

    e = sub.add_parser(
        "serve-emulator",
        help="run the Flinks emulator as a server",
        description="Serve the Flinks emulator for integration tests. It accepts any "
        "customer id and any loginId that is a GUID (36 characters); each login answers "
        "--pending 202s, then a deterministic payload. Keys come from the files given or "
        "from FLINKS_EMULATOR_API_KEY / FLINKS_EMULATOR_SECRET_KEY; when set, they are "
        "demanded (x-api-key on data endpoints, the secret key at GenerateAuthorizeToken).",
    )
    e.add_argument("--host", default="127.0.0.1", help="address to bind")
    e.add_argument("--port", type=_number(int, 0), default=8080, help="port (0: a free one)")
    e.add_argument("--pending", type=_number(int, 0), default=2, help="202 answers before data")
    e.add_argument("--payload-bytes", type=_COUNT, default=20_000, help="payload size")
    e.add_argument(
        "--latency", type=_number(float, 0), default=0.0, help="seconds added to each answer"
    )
    e.add_argument(
        "--fault-rate",
        action="append",
        default=[],
        metavar="SPEC=P",
        help="draw fault SPEC for each login with probability P (repeatable; specs in "
        "docs/testing.md)",
    )
    e.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    e.add_argument(
        "--api-key-file", help="demand this API key (else FLINKS_EMULATOR_API_KEY, else none)"
    )
    e.add_argument(
        "--secret-key-file",
        help="demand this secret key (else FLINKS_EMULATOR_SECRET_KEY, else none)",
    )
    e.add_argument(
        "--record", type=_number(int, 0), default=0, help="requests to keep for inspection"
    )
    _add_loop(e)

    q = sub.add_parser(
        "enqueue",
        help="put logins on the job queue for distributed workers",
        description="Record each login id of a job and put one job per new login on the arq "
        "queue of a Redis, for `flinks-async worker` processes on any machine (needs "
        "flinks-async[queue]). A login already recorded for this job is never queued again "
        "(--retry-failed re-queues the failed ones). Every key of the job expires --ttl "
        "seconds after its last write.",
    )
    q.add_argument("--redis", required=True, help="redis:// or rediss:// URL of the queue")
    q.add_argument("--job", required=True, help="a name for this pull (one word)")
    ids_or_retry = q.add_mutually_exclusive_group(required=True)
    ids_or_retry.add_argument("--login-ids", help="file with one loginId a line, or - for stdin")
    ids_or_retry.add_argument(
        "--retry-failed",
        action="store_true",
        help="re-queue the logins of the job whose line says they failed",
    )
    q.add_argument(
        "--endpoint", choices=sorted(ENDPOINTS), default="investments", help="what to pull"
    )
    q.add_argument(
        "--ttl",
        type=_number(float, 1),
        default=7 * 24 * 3600,
        help="seconds the job's keys (ids, results) live after their last write (7 days)",
    )
    w = sub.add_parser(
        "worker",
        help="run a queue worker (arq)",
        description="Run an arq worker pulling queued logins with one FlinksClient, configured "
        "from FLINKS_* variables (FLINKS_REDIS_URL: one rate limit and one single-flight for "
        "all workers, checked at start-up; FLINKS_RATE_LIMIT, FLINKS_POLL_INTERVAL, "
        "FLINKS_POLL_TIMEOUT, FLINKS_WORKER_CONCURRENCY, FLINKS_JOB_SLICE, FLINKS_JOB_TRIES, "
        "FLINKS_JOB_BACKOFF, FLINKS_WORKER_PROGRESS). Logs a line at start-up and a progress "
        "line every FLINKS_WORKER_PROGRESS seconds (30); survives the queue's Redis going "
        "away (reconnects). On SIGINT/SIGTERM it stops at once: its logins go back on the "
        "queue and resume their session on another worker.",
    )
    w.add_argument("--redis", required=True, help="redis:// or rediss:// URL of the queue")
    w.add_argument(
        "--burst", action="store_true", help="stop once the queue is empty (default: wait)"
    )
    c = sub.add_parser(
        "collect",
        help="write a distributed pull's results as JSONL",
        description="Write every result of a job stored so far, one JSON line per login (the "
        "line format of `pull`), and report how many logins are still pending. Exit status: "
        "0 all done and ok, 1 some failed or pending, 2 an unknown job or a usage error.",
    )
    c.add_argument("--redis", required=True, help="redis:// or rediss:// URL of the queue")
    c.add_argument("--job", required=True, help="the name given to enqueue")
    c.add_argument("--out", required=True, help="JSONL output file, or - for stdout")
    c.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty --out (refused otherwise)"
    )
    c.add_argument("--delete", action="store_true", help="purge the job from Redis once written")
    for name, text in (
        ("status", "show where a distributed pull stands"),
        ("purge", "delete a distributed pull's keys and queued work from Redis"),
    ):
        x = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        x.add_argument("--redis", required=True, help="redis:// or rediss:// URL of the queue")
        x.add_argument("--job", required=True, help="the name given to enqueue")
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
        if args.command in _QUEUE_COMMANDS:
            return _queue_command(args)
        loop = _loop_options(args.loop)
        if args.command == "demo":
            return anyio.run(_interruptible, _demo, args, backend_options=loop)
        if args.command == "pull":
            job = _prepare_pull(args)
            pull = functools.partial(_pull, job=job)
            return anyio.run(_interruptible, pull, args, backend_options=loop)
        return anyio.run(_interruptible, _serve, args, backend_options=loop)
    except (FlinksError, ValueError, OSError) as exc:  # NotOurs, UsageError, IdSourceError...
        message = (
            str(exc)
            if not isinstance(exc, OSError) or not exc.filename
            else (f"{exc.filename}: {exc.strerror}")
        )
        print(f"flinks-async: error: {message}", file=sys.stderr)
        return EXIT_USAGE


_QUEUE_COMMANDS = ("enqueue", "worker", "collect", "status", "purge")


def _queue_command(args: argparse.Namespace) -> int:
    """``enqueue`` / ``worker`` / ``collect`` / ``status`` / ``purge``: the distributed
    pull (arq). Redis unreachable is one line and exit status 2, as for ``pull``."""
    from . import _distributed

    try:
        return anyio.run(_queue_async, args, _distributed)
    except (OSError, TimeoutError) as exc:
        raise CoordinationError(
            f"the queue's Redis at {shown_redis_url(args.redis)} failed: {type(exc).__name__}"
        ) from None
    except Exception as exc:
        if type(exc).__module__.startswith("redis"):
            raise CoordinationError(
                f"the queue's Redis at {shown_redis_url(args.redis)} failed: {type(exc).__name__}"
            ) from None
        raise


async def _queue_async(args: argparse.Namespace, dist: Any) -> int:
    if args.command == "worker":
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
        await dist.run_worker(args.redis, burst=args.burst)
        return 0
    if args.command == "enqueue":
        if args.retry_failed:
            n = await dist.retry_failed(args.redis, job=args.job)
            print(f"re-queued {n} failed logins of job {args.job}", file=sys.stderr)
            return 0
        ids = read_ids(open_ids(args.login_ids), args.login_ids)
        new, known = await dist.enqueue(
            args.redis, ids, job=args.job, endpoint=args.endpoint, ttl=args.ttl
        )
        print(f"enqueued {new} logins for job {args.job} ({known} already known)", file=sys.stderr)
        return 0
    if args.command == "status":
        st = await dist.status(args.redis, job=args.job)
        print(
            f"job {args.job}: {st.logins} logins, {st.done} done, {st.failed} failed, "
            f"{st.pending} pending, {st.in_flight} in flight; {st.workers} workers alive"
        )
        return 0
    if args.command == "purge":
        gone = await dist.purge(args.redis, job=args.job)
        print(f"purged job {args.job} ({gone} keys)", file=sys.stderr)
        return 0
    lines, failed, pending = await dist.collect(
        args.redis, job=args.job, out=args.out, overwrite=args.overwrite, delete=args.delete
    )
    print(
        f"{lines} logins written to {args.out} ({failed} failed), {pending} pending"
        + (f"; job {args.job} purged" if args.delete else ""),
        file=sys.stderr,
    )
    return 0 if pending == 0 and failed == 0 else EXIT_FAILED_LOGINS


async def _interruptible(command: Any, args: argparse.Namespace) -> int:
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


def _progress(mode: str, total: int | None) -> Progress:
    return Progress(total, enabled=None if mode == "auto" else mode == "on")


# --- demo ------------------------------------------------------------------------------


async def _demo(args: argparse.Namespace) -> int:
    from .testing import Emulator, demo_login_ids

    faults = {} if args.no_faults else DEMO_FAULTS
    ids = demo_login_ids(args.logins, seed=args.seed)
    progress = _progress(args.progress, len(ids))
    accounts = positions = transactions = 0
    started = time.monotonic()
    async with Emulator(
        pending=args.pending,
        payload_bytes=args.payload_bytes,
        fault_rates=faults,
        seed=args.seed,
        record=0,
    ) as emu:
        print(
            fit(f"flinks-async demo: {len(ids)} logins from the emulator at {emu.url}")
            + "\n"
            + fit(
                f"concurrency {args.concurrency}, poll interval {args.poll_interval}s, "
                f"loop {_loop_name()}"
            ),
            file=sys.stderr,
        )
        async with (
            FlinksClient(
                DEMO_CUSTOMER_ID,
                base_url=emu.url,
                poll_interval=args.poll_interval,
                backoff_initial=0.02,
                backoff_max=0.2,
                max_connections=args.concurrency,
            ) as client,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(progress.run)
            async with client.investments_many(
                ids, concurrency=args.concurrency, on_event=progress.hook
            ) as results:
                async for r in results:
                    if r.ok and r.value is not None:
                        for acct in r.value.accounts or ():
                            accounts += 1
                            positions += len(acct.positions or ())
                            transactions += len(acct.transactions or ())
            requests = client.requests_sent
            tg.cancel_scope.cancel()
        elapsed = time.monotonic() - started
    rows = [
        ("logins", f"{len(ids)}"),
        ("succeeded", f"{progress.ok}"),
        ("failed", f"{progress.failed}"),
    ]
    rows += [(f"  {name}", f"{n}") for name, n in progress.errors.most_common()]
    rows += [
        ("pending polls", f"{progress.polls}"),
        ("retries", f"{progress.retries}"),
        ("HTTP requests", f"{requests} ({requests / elapsed:,.0f}/s)"),
        ("accounts / positions / transactions", f"{accounts} / {positions} / {transactions}"),
        ("wall time", f"{elapsed:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\nsummary")
    for key, value in rows:
        print(fit(f"  {key:<{width}}  {value}", indent=" " * (width + 4), stream=sys.stdout))
    return 0


# --- pull ------------------------------------------------------------------------------


def _read_secret(path: str | None, env: str) -> str | None:
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    return os.environ.get(env) or None


@dataclasses.dataclass
class _PullJob:
    """What ``pull`` opened once every input was checked (before the event loop starts)."""

    client: FlinksClient
    ids: BinaryIO
    out: Output
    state: ResumeState
    endpoint: str


def _prepare_pull(args: argparse.Namespace) -> _PullJob:
    """Check every argument and file, then open them: any error here is a usage error and
    leaves the output file as it was (not even created)."""
    endpoint = ENDPOINTS[args.endpoint].name
    if args.resume and args.out == "-":
        raise UsageError("--resume needs --out FILE (it reads what is already there)")
    if args.skip_failed and not args.resume:
        raise UsageError("--skip-failed goes with --resume")
    api_key = _read_secret(args.api_key_file, "FLINKS_API_KEY")
    secret_key = _read_secret(args.secret_key_file, "FLINKS_SECRET_KEY")
    ids = open_ids(args.login_ids)
    try:
        if (
            args.login_ids != "-"
            and os.path.isfile(args.login_ids)
            and not holds_ids(args.login_ids)
        ):
            raise UsageError(f"{args.login_ids}: no login ids (every line is blank or a # comment)")
        state = ResumeState()
        if args.out != "-":
            if args.resume:
                state = scan(args.out, endpoint)
            elif not args.overwrite and os.path.isfile(args.out) and os.path.getsize(args.out):
                raise UsageError(
                    f"{args.out} is not empty: pass --resume to continue it or --overwrite "
                    "to replace it"
                )
        client = FlinksClient(
            args.customer_id,
            base_url=args.base_url,
            api_key=api_key,
            secret_key=secret_key,
            poll_interval=args.poll_interval,
            poll_timeout=args.poll_timeout,
            rate_limit=args.rate_limit,
            rate_limit_window=args.rate_limit_window,
            investments_url=args.investments_url,
            max_connections=args.concurrency,
            unreachable_after=args.unreachable_after or None,
        )
        out = Output(args.out, truncate=args.overwrite)
    except BaseException:
        if ids is not sys.stdin.buffer:
            ids.close()
        raise
    cut_torn_tail(args.out, state)
    return _PullJob(client, ids, out, state, endpoint)


async def _pull(args: argparse.Namespace, job: _PullJob) -> int:
    client, ids, out, state, endpoint = job.client, job.ids, job.out, job.state, job.endpoint
    skipped = skipped_failed = retried = 0

    read = duplicates = 0

    async def todo() -> AsyncIterator[str]:
        nonlocal skipped, skipped_failed, retried, read
        async for login_id in read_ids(ids, args.login_ids):
            read += 1
            key = login_id.lower()
            if key in state.ok:
                skipped += 1
            elif key in state.failed and args.skip_failed:
                skipped_failed += 1
            else:
                retried += key in state.failed
                yield login_id

    progress = _progress(args.progress, None)
    started = time.monotonic()
    failures: collections.Counter[str] = collections.Counter()
    stopped: Exception | None = None  # raised bare after the task group, not in a group
    written_ok = written_failed = 0  # what the file says (the summary and exit status too)
    try:
        async with client, anyio.create_task_group() as tg:
            tg.start_soon(progress.run)
            try:
                async with client.many(
                    args.endpoint,
                    todo(),
                    concurrency=args.concurrency,
                    on_event=progress.hook,
                    raw=True,
                ) as results:
                    try:
                        async for r in results:
                            if r.error is None:
                                assert isinstance(r.value, bytes)
                                out.write(ok_line(r.login_id, endpoint, r.value))
                                written_ok += 1
                            else:
                                reason = getattr(r.error, "flinks_code", None)
                                failures[reason or type(r.error).__name__] += 1
                                out.write(error_line(r.login_id, endpoint, r.error))
                                written_failed += 1
                    finally:
                        duplicates = getattr(results, "duplicates", 0)
            except Exception as exc:  # a bad id line, the circuit breakers: usage errors
                stopped = exc
            tg.cancel_scope.cancel()
        if stopped is not None:
            raise stopped
    finally:
        out.close()
        elapsed = time.monotonic() - started
        also = f", {retried} of them failed before" if retried else ""
        clauses = [f"flinks-async pull: {written_ok} ok, {written_failed} failed{also}"]
        if skipped:
            clauses.append(f"{skipped} skipped (already ok in {args.out})")
        if skipped_failed:
            clauses.append(f"{skipped_failed} failed before and skipped (--skip-failed)")
        if duplicates:
            clauses.append(f"{duplicates} repeated ids skipped")
        clauses.append(f"{client.requests_sent} requests, {elapsed:.1f}s")
        print(fit("; ".join(clauses)), file=sys.stderr)
        for reason, n in failures.most_common():
            print(fit(f"  failed: {reason}: {n}", indent="    "), file=sys.stderr)
    if not read:
        print(f"flinks-async: error: {args.login_ids}: no login ids", file=sys.stderr)
        return EXIT_USAGE
    # the exit status is the file's final state: a failure skipped with --skip-failed stays one
    return EXIT_FAILED_LOGINS if written_failed or skipped_failed else 0


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


# --- serve-emulator ----------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> int:
    from .testing import Emulator

    rates: dict[str, float] = {}
    for item in args.fault_rate:
        spec, _, p = item.rpartition("=")
        if not spec:
            raise ValueError(f"--fault-rate takes SPEC=P, got {item!r}")
        rates[spec] = float(p)
    emu = Emulator(
        host=args.host,
        port=args.port,
        pending=args.pending,
        payload_bytes=args.payload_bytes,
        latency=args.latency,
        fault_rates=rates,
        seed=args.seed,
        record=args.record,
        api_key=_read_secret(args.api_key_file, "FLINKS_EMULATOR_API_KEY"),
        secret_key=_read_secret(args.secret_key_file, "FLINKS_EMULATOR_SECRET_KEY"),
    )
    async with emu:
        print(
            f"Flinks emulator serving on {emu.url} (any customer id, loop {_loop_name()}); "
            "Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        try:
            await anyio.sleep_forever()
        finally:
            print(f"emulator: {emu.requests_total} requests served", file=sys.stderr)
    return 0
