"""``flinks-async pull``: one endpoint for every login id of a file (or stdin) into JSONL,
one line per login as results arrive; ``--resume`` continues a stopped job."""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

import anyio

from .._client import FlinksClient
from .._cmdline import COUNT, EXIT_USAGE, SECONDS, UsageError, add_loop, number, read_secret
from .._files._jsonl import Output, ResumeState, cut_torn_tail, error_line, ok_line, scan
from .._polling import ENDPOINTS
from . import _webhooks
from ._idsource import count_ids, open_ids, read_ids
from ._terminal import add_progress, fit, progress_display

__all__ = ["EXIT_FAILED_LOGINS", "PullJob", "add_parser", "prepare", "run"]

#: Exit status when some logins failed (their lines say why).
EXIT_FAILED_LOGINS = 1


def add_parser(sub: Any) -> None:
    """``pull`` and its options, on the command line's subparsers."""
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
    u.add_argument("--concurrency", type=COUNT, default=50, help="logins in flight")
    u.add_argument(
        "--rate-limit",
        type=number(float, 0, strict=True),
        help="at most N requests arrive at Flinks in any --rate-limit-window (a whole "
        "number, or below 1: one request per window/N); default no limit",
    )
    u.add_argument(
        "--rate-limit-window",
        type=SECONDS,
        default=1.0,
        help="seconds the rate limit counts in",
    )
    u.add_argument("--poll-interval", type=SECONDS, default=10.0, help="seconds between polls")
    u.add_argument(
        "--poll-timeout", type=SECONDS, default=1800.0, help="seconds one login may take"
    )
    u.add_argument(
        "--unreachable-after",
        type=number(int, 0),
        default=20,
        help="stop the pull (exit 2) when this many connection attempts in a row fail "
        "before Flinks ever answered (a wrong --base-url); 0 turns it off",
    )
    u.add_argument("--investments-url", help="full URL of /Investments (e.g. the wealth host)")
    u.add_argument(
        "--webhooks",
        action="store_true",
        default=None,
        help="let Flinks' webhooks end the logins' polling (else FLINKS_WEBHOOKS): a login "
        "answered 202 waits for its webhook and polls only every --webhook-poll-interval; "
        "the webhooks reach this process through --webhook-listen, or through the Redis of "
        "FLINKS_REDIS_URL from `flinks-async serve-webhooks` running anywhere",
    )
    u.add_argument(
        "--webhook-poll-interval",
        type=SECONDS,
        default=None,
        help="with webhooks: seconds between the safety polls (60)",
    )
    _webhooks.add_receiver_arguments(u, listen_default=None)
    add_progress(u)
    add_loop(u)


@dataclasses.dataclass
class PullJob:
    """What ``pull`` opened once every input was checked (before the event loop starts)."""

    client: FlinksClient
    ids: BinaryIO
    out: Output
    state: ResumeState
    endpoint: str
    #: with ``--webhook-listen``: where to serve the receiver, its path and secrets
    receiver: tuple[tuple[str, int], str, list[str]] | None = None
    #: ids of the file this pull will hand to the fan-out (all but those ``--resume``
    #: skips; repeats included), counted before it starts; ``None`` for stdin or a pipe
    total: int | None = None


def prepare(args: argparse.Namespace) -> PullJob:
    """Check every argument and file, then open them: any error here is a usage error and
    leaves the output file as it was (not even created)."""
    endpoint = ENDPOINTS[args.endpoint].name
    if args.resume and args.out == "-":
        raise UsageError("--resume needs --out FILE (it reads what is already there)")
    if args.skip_failed and not args.resume:
        raise UsageError("--skip-failed goes with --resume")
    api_key = read_secret(args.api_key_file, "FLINKS_API_KEY")
    secret_key = read_secret(args.secret_key_file, "FLINKS_SECRET_KEY")
    receiver = None
    if args.webhook_listen:
        address = _webhooks.listen_address(args.webhook_listen)
        receiver = (address, args.webhook_path, _webhooks.secrets(args))
    ids = open_ids(args.login_ids)
    try:
        state = ResumeState()
        if args.out != "-":
            if args.resume:
                state = scan(args.out, endpoint)
            elif not args.overwrite and os.path.isfile(args.out) and os.path.getsize(args.out):
                raise UsageError(
                    f"{args.out} is not empty: pass --resume to continue it or --overwrite "
                    "to replace it"
                )
        total = None
        if args.login_ids != "-" and os.path.isfile(args.login_ids):
            # the progress line's total (and ETA, bar): one streamed pass, before the pull
            found, total = count_ids(args.login_ids, _skipped_by(state, args.skip_failed))
            if not found:
                raise UsageError(
                    f"{args.login_ids}: no login ids (every line is blank or a # comment)"
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
            webhooks=True if receiver else args.webhooks,
            webhook_poll_interval=args.webhook_poll_interval,
        )
        s = client.settings
        if s.webhooks and receiver is None and s.redis_url is None:
            raise UsageError(
                "webhooks need a way in: --webhook-listen HOST:PORT (this process receives "
                "them), or FLINKS_REDIS_URL with `flinks-async serve-webhooks` receiving"
            )
        # created now (a path that cannot be written is a usage error), but removed again
        # if the pull writes no line (a set-up error): no empty file is left behind
        out = Output(args.out, truncate=args.overwrite, tentative=True)
    except BaseException:
        if ids is not sys.stdin.buffer:
            ids.close()
        raise
    cut_torn_tail(args.out, state)
    return PullJob(client, ids, out, state, endpoint, receiver, total)


def _skipped_by(state: ResumeState, skip_failed: bool) -> Callable[[str], bool] | None:
    """Whether ``--resume`` skips an id (``None``: it skips none)."""
    if not state.ok and not (skip_failed and state.failed):
        return None
    return lambda login_id: (
        (key := login_id.lower()) in state.ok or (skip_failed and key in state.failed)
    )


async def run(args: argparse.Namespace, job: PullJob) -> int:
    """Pull what ``job`` holds; the exit status (0 all ok, 1 some failed, 2 no ids)."""
    client, ids, out, state, endpoint = job.client, job.ids, job.out, job.state, job.endpoint
    skipped = skipped_failed = 0

    read = duplicates = 0

    async def todo() -> AsyncIterator[str]:
        nonlocal skipped, skipped_failed, read
        async for login_id in read_ids(ids, args.login_ids):
            read += 1
            key = login_id.lower()
            if key in state.ok:
                skipped += 1
            elif key in state.failed and args.skip_failed:
                skipped_failed += 1
            else:
                yield login_id

    progress = progress_display(args.progress, job.total)
    started = time.monotonic()
    failures: collections.Counter[str] = collections.Counter()
    stopped: Exception | None = None  # raised bare after the task group, not in a group
    written_ok = written_failed = 0  # what the file says (the summary and exit status too)
    ok_again = failed_again = 0  # of those, logins whose last line in the file was a failure
    try:
        async with client, _receiving(client, job.receiver), anyio.create_task_group() as tg:
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
                            before = r.login_id.lower() in state.failed
                            if r.error is None:
                                assert isinstance(r.value, bytes)
                                out.write(ok_line(r.login_id, endpoint, r.value))
                                written_ok += 1
                                ok_again += before
                            else:
                                reason = getattr(r.error, "flinks_code", None)
                                failures[reason or type(r.error).__name__] += 1
                                out.write(error_line(r.login_id, endpoint, r.error))
                                written_failed += 1
                                failed_again += before
                            if job.total is not None:  # repeats are not pulled: not to do
                                progress.total = job.total - getattr(results, "duplicates", 0)
                    finally:
                        duplicates = getattr(results, "duplicates", 0)
                        if job.total is not None:
                            progress.total = job.total - duplicates
            except Exception as exc:  # a bad id line, the circuit breakers: usage errors
                stopped = exc
            tg.cancel_scope.cancel()
        if stopped is not None:
            raise stopped
    finally:
        out.close()
        elapsed = time.monotonic() - started
        clauses = [
            "flinks-async pull: "
            + _outcome(written_ok, "ok", ok_again, ok_again + failed_again)
            + ", "
            + _outcome(written_failed, "failed", failed_again, ok_again + failed_again)
        ]
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


def _outcome(count: int, what: str, before: int, retried: int) -> str:
    """``"1006 ok (13 of them failed before)"``: how many of ``count`` logins had a failure
    as their last line in the file (``--resume`` pulled them again), said only when some
    logins were pulled again and ``count`` is not 0."""
    if not retried or not count:
        return f"{count} {what}"
    of_them = str(before) if before else "none"
    return f"{count} {what} ({of_them} of them failed before)"


def _receiving(
    client: FlinksClient, receiver: tuple[tuple[str, int], str, list[str]] | None
) -> contextlib.AbstractAsyncContextManager[None]:
    """The webhook receiver served while pulling (``--webhook-listen``), or nothing."""
    if receiver is None:
        return contextlib.nullcontext()
    return _webhooks.receiving(client, *receiver)
