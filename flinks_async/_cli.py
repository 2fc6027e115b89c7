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
import collections
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, BinaryIO

import anyio
import msgspec

from ._client import FlinksClient
from ._errors import APIError, FlinksError
from ._polling import ENDPOINTS
from ._progress import Progress
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flinks-async", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    p.add_argument("--version", action="version", version=f"flinks-async {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="pull a batch from the built-in emulator", allow_abbrev=False)
    d.add_argument("--logins", type=int, default=300, help="logins to pull (300)")
    d.add_argument("--concurrency", type=int, default=100, help="logins in flight (100)")
    d.add_argument("--pending", type=int, default=2, help="202 answers before data (2)")
    d.add_argument("--payload-bytes", type=int, default=20_000, help="payload size (20000)")
    d.add_argument("--poll-interval", type=float, default=0.05, help="seconds (0.05)")
    d.add_argument("--no-faults", action="store_true", help="no injected faults")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--progress", choices=["auto", "on", "off"], default="auto")

    u = sub.add_parser("pull", help="bulk-pull logins into JSONL", allow_abbrev=False)
    u.add_argument("--customer-id", help="else FLINKS_CUSTOMER_ID")
    u.add_argument("--base-url", help="else FLINKS_BASE_URL, else the toolbox sandbox")
    u.add_argument("--api-key-file", help="file holding the API key (else FLINKS_API_KEY)")
    u.add_argument("--secret-key-file", help="file holding the secret key (else FLINKS_SECRET_KEY)")
    u.add_argument("--login-ids", required=True, help="file with one loginId a line, or -")
    u.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="investments")
    u.add_argument("--out", default="-", help="JSONL output file (mode 0600), or - (stdout)")
    u.add_argument(
        "--resume",
        action="store_true",
        help="skip logins already in --out (repairs a torn last line)",
    )
    u.add_argument("--concurrency", type=int, default=50, help="logins in flight (50)")
    u.add_argument(
        "--rate-limit",
        type=float,
        help="at most N requests arrive at Flinks in any --rate-limit-window (default: no limit)",
    )
    u.add_argument(
        "--rate-limit-window",
        type=float,
        default=1.0,
        help="seconds the rate limit counts in (1.0)",
    )
    u.add_argument("--poll-interval", type=float, default=10.0, help="seconds (10)")
    u.add_argument("--poll-timeout", type=float, default=1800.0, help="seconds (1800)")
    u.add_argument("--investments-url", help="full URL of /Investments (wealth host)")
    u.add_argument("--progress", choices=["auto", "on", "off"], default="auto")

    e = sub.add_parser("serve-emulator", help="run the Flinks emulator", allow_abbrev=False)
    e.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    e.add_argument("--port", type=int, default=8080)
    e.add_argument("--pending", type=int, default=2)
    e.add_argument("--payload-bytes", type=int, default=20_000)
    e.add_argument("--latency", type=float, default=0.0)
    e.add_argument(
        "--fault-rate",
        action="append",
        default=[],
        metavar="SPEC=P",
        help="draw fault SPEC for each login with probability P (repeatable)",
    )
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--api-key-file", help="demand this API key")
    e.add_argument("--secret-key-file", help="demand this secret key")
    e.add_argument("--record", type=int, default=0, help="requests to keep for inspection")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return anyio.run(_interruptible, _demo, args)
        if args.command == "pull":
            return anyio.run(_interruptible, _pull, args)
        return anyio.run(_interruptible, _serve, args)
    except (FlinksError, ValueError, OSError) as exc:
        print(f"flinks-async: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


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
            f"flinks-async demo: {len(ids)} logins from the built-in emulator at {emu.url} "
            f"(concurrency {args.concurrency}, poll interval {args.poll_interval}s)",
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
                        for acct in r.value.accounts:
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
        print(f"  {key:<{width}}  {value}")
    return 0


# --- pull ------------------------------------------------------------------------------

_LOGIN_PREFIX = re.compile(rb'\{"login_id":"([^"]{1,64})"')


class _Line(msgspec.Struct):
    login_id: str


def _read_secret(path: str | None, env: str) -> str | None:
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    return os.environ.get(env) or None


def _done_login_ids(path: str) -> set[str]:
    """Login ids already in a JSONL output file; a torn last line is cut off (repaired).

    Streams the file line by line (memory: the ids, not the payloads). Every line but the
    last was followed by another write, so it is whole; the last one is checked in full.
    """
    done: set[str] = set()
    try:
        f = open(path, "r+b")  # noqa: SIM115 - closed below, after the truncate
    except FileNotFoundError:
        return done
    with f:
        good = 0  # bytes of complete, valid lines
        previous: bytes | None = None
        for number, line in enumerate(f):
            if previous is not None:  # not the last line: whole by construction
                m = _LOGIN_PREFIX.match(previous)
                if m is None:
                    raise ValueError(
                        f"{path}: line {number} is not a flinks-async result line; not "
                        "resuming, the file is left as it is"
                    )
                done.add(m[1].decode().lower())
                good += len(previous)
            previous = line
        if previous is not None and _whole_line(previous):
            m = _LOGIN_PREFIX.match(previous)
            assert m is not None
            done.add(m[1].decode().lower())
            good += len(previous)
        size = f.seek(0, os.SEEK_END)
        if good < size:
            print(
                f"flinks-async: repaired {path}: removed {size - good} bytes after the last "
                "complete line",
                file=sys.stderr,
            )
            f.truncate(good)
    return done


def _whole_line(line: bytes) -> bool:
    """True when ``line`` is one complete JSONL record of ours."""
    if not line.endswith(b"\n") or _LOGIN_PREFIX.match(line) is None:
        return False
    try:
        msgspec.json.decode(line, type=_Line)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return False
    return True


async def _read_ids(source: str) -> AsyncIterator[str]:
    """Login ids from a file or stdin, one a line (blank lines and # comments skipped)."""

    def lines() -> Iterator[str]:
        if source == "-":
            yield from sys.stdin
        else:
            with open(source, encoding="utf-8") as f:
                yield from f

    for raw in lines():
        text = raw.strip()
        if text and not text.startswith("#"):
            yield text


def _error_line(login_id: str, endpoint: str, error: FlinksError) -> bytes:
    err: dict[str, Any] = {
        "type": type(error).__name__,
        "message": str(error),
        "request_id": error.request_id,
    }
    if isinstance(error, APIError):
        err["flinks_code"] = error.flinks_code
        err["http_status"] = error.http_status
    return (
        msgspec.json.encode({"login_id": login_id, "endpoint": endpoint, "ok": False, "error": err})
        + b"\n"
    )


def _ok_line(login_id: str, endpoint: str, body: bytes) -> bytes:
    # JSON text has no raw newline inside strings, so folding them keeps it valid and one line.
    body = body.strip().replace(b"\r", b" ").replace(b"\n", b" ")
    head = msgspec.json.encode({"login_id": login_id, "endpoint": endpoint, "ok": True})
    return head[:-1] + b',"data":' + body + b"}\n"


class _Output:
    """Appends whole lines with one write each: a crash can only tear the last line."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path == "-":
            self._fd = sys.stdout.fileno()
            self._stream: BinaryIO | None = sys.stdout.buffer
        else:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._stream = None

    def write(self, line: bytes) -> None:
        if self._stream is not None:
            self._stream.write(line)
            self._stream.flush()
            return
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        if self._stream is None:
            os.fsync(self._fd)
            os.close(self._fd)


async def _pull(args: argparse.Namespace) -> int:
    done = _done_login_ids(args.out) if args.resume and args.out != "-" else set()
    skipped = 0

    async def todo() -> AsyncIterator[str]:
        nonlocal skipped
        async for login_id in _read_ids(args.login_ids):
            if login_id.lower() in done:
                skipped += 1
            else:
                yield login_id

    client = FlinksClient(
        args.customer_id,
        base_url=args.base_url,
        api_key=_read_secret(args.api_key_file, "FLINKS_API_KEY"),
        secret_key=_read_secret(args.secret_key_file, "FLINKS_SECRET_KEY"),
        poll_interval=args.poll_interval,
        poll_timeout=args.poll_timeout,
        rate_limit=args.rate_limit,
        rate_limit_window=args.rate_limit_window,
        investments_url=args.investments_url,
        max_connections=max(args.concurrency, 1),
    )
    endpoint = ENDPOINTS[args.endpoint].name
    progress = _progress(args.progress, None)
    out = _Output(args.out)
    started = time.monotonic()
    failures: collections.Counter[str] = collections.Counter()
    try:
        async with client, anyio.create_task_group() as tg:
            tg.start_soon(progress.run)
            async with client.many(
                args.endpoint,
                todo(),
                concurrency=args.concurrency,
                on_event=progress.hook,
                raw=True,
            ) as results:
                async for r in results:
                    if r.error is None:
                        assert isinstance(r.value, bytes)
                        out.write(_ok_line(r.login_id, endpoint, r.value))
                    else:
                        failures[
                            getattr(r.error, "flinks_code", None) or type(r.error).__name__
                        ] += 1
                        out.write(_error_line(r.login_id, endpoint, r.error))
            tg.cancel_scope.cancel()
    finally:
        out.close()
        elapsed = time.monotonic() - started
        print(
            f"flinks-async pull: {progress.ok} ok, {progress.failed} failed, {skipped} "
            f"skipped (already in {args.out}), {client.requests_sent} requests, "
            f"{elapsed:.1f}s",
            file=sys.stderr,
        )
        for reason, n in failures.most_common():
            print(f"  failed: {reason}: {n}", file=sys.stderr)
    return EXIT_FAILED_LOGINS if progress.failed else 0


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
            f"Flinks emulator serving on {emu.url} (any customer id); Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        try:
            await anyio.sleep_forever()
        finally:
            print(f"emulator: {emu.requests_total} requests served", file=sys.stderr)
    return 0
