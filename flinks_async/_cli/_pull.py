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
from typing import TYPE_CHECKING, Any, BinaryIO

import anyio

from .._client import FlinksClient
from .._cmdline import COUNT, EXIT_USAGE, SECONDS, UsageError, add_loop, number, read_secret
from .._endpoints import ENDPOINTS
from .._files._jsonl import (
    Output,
    ResumeState,
    cut_torn_tail,
    error_line,
    ineligible_line,
    ok_line,
    scan,
)
from . import _nightly, _webhooks
from ._idsource import count_ids, open_ids, read_ids
from ._terminal import add_progress, fit, progress_display

if TYPE_CHECKING:
    from .._bulk import Result
    from .._management_models import IneligibleLogin

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
    _add_files(u)
    _nightly.add_arguments(u)
    _add_pace(u)
    _add_webhooks(u)
    add_progress(u)
    add_loop(u)


def _add_files(u: argparse.ArgumentParser) -> None:
    """What ``pull`` reads and writes: the ids, the endpoint, the JSONL file."""
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


def _add_pace(u: argparse.ArgumentParser) -> None:
    """How fast and how long: concurrency, rate limit, polls, the unreachable breaker."""
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


def _add_webhooks(u: argparse.ArgumentParser) -> None:
    """Webhooks ending the logins' polling, and their receiver."""
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
    endpoint = ENDPOINTS[args.endpoint].flinks_name
    if args.resume and args.out == "-":
        raise UsageError("--resume needs --out FILE (it reads what is already there)")
    if args.skip_failed and not args.resume:
        raise UsageError("--skip-failed goes with --resume")
    api_key = read_secret(args.api_key_file, "FLINKS_API_KEY")
    secret_key = read_secret(args.secret_key_file, "FLINKS_SECRET_KEY")
    nightly_key = read_secret(args.nightly_key_file, _nightly.KEY_ENV)
    _nightly.check(args, nightly_key)
    receiver = None
    if args.webhook_listen:
        address = _webhooks.listen_address(args.webhook_listen)
        receiver = (address, args.webhook_path, _webhooks.secrets(args))
    ids = open_ids(args.login_ids)
    try:
        state = _resume_state(args, endpoint)
        total = _total(args, state)
        client = _client(args, api_key, secret_key, nightly_key, listening=receiver is not None)
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


def _resume_state(args: argparse.Namespace, endpoint: str) -> ResumeState:
    """What ``--out`` already holds (``--resume``); refuses a non-empty file otherwise,
    unless ``--overwrite``."""
    if args.out == "-":
        return ResumeState()
    if args.resume:
        return scan(args.out, endpoint)
    if not args.overwrite and os.path.isfile(args.out) and os.path.getsize(args.out):
        raise UsageError(
            f"{args.out} is not empty: pass --resume to continue it or --overwrite to replace it"
        )
    return ResumeState()


def _total(args: argparse.Namespace, state: ResumeState) -> int | None:
    """The progress line's total (and ETA, bar): one streamed pass over the ids file,
    before the pull; ``None`` for stdin or a pipe."""
    if args.login_ids == "-" or not os.path.isfile(args.login_ids):
        return None
    found, total = count_ids(args.login_ids, _skipped_by(state, args.skip_failed))
    if not found:
        raise UsageError(f"{args.login_ids}: no login ids (every line is blank or a # comment)")
    return total


def _client(
    args: argparse.Namespace,
    api_key: str | None,
    secret_key: str | None,
    nightly_key: str | None,
    *,
    listening: bool,
) -> FlinksClient:
    """The client of ``pull`` (``listening``: with ``--webhook-listen``)."""
    return FlinksClient(
        args.customer_id,
        base_url=args.base_url,
        api_key=api_key,
        secret_key=secret_key,
        nightly_refresh_key=nightly_key,
        poll_interval=args.poll_interval,
        poll_timeout=args.poll_timeout,
        rate_limit=args.rate_limit,
        rate_limit_window=args.rate_limit_window,
        investments_url=args.investments_url,
        max_connections=args.concurrency,
        unreachable_after=args.unreachable_after or None,
        webhooks=True if listening else args.webhooks,
        webhook_poll_interval=args.webhook_poll_interval,
    )


def _skipped_by(state: ResumeState, skip_failed: bool) -> Callable[[str], bool] | None:
    """Whether ``--resume`` skips an id (``None``: it skips none)."""
    if not state.ok and not (skip_failed and state.failed):
        return None
    return lambda login_id: (
        (key := login_id.lower()) in state.ok or (skip_failed and key in state.failed)
    )


@dataclasses.dataclass
class _Tally:
    """What a pull read, skipped and wrote: its summary and its exit status."""

    state: ResumeState
    skip_failed: bool
    read: int = 0
    skipped: int = 0
    skipped_failed: int = 0
    duplicates: int = 0
    written_ok: int = 0  # what the file says (the summary and exit status too)
    written_failed: int = 0
    ok_again: int = 0  # of those, logins whose last line in the file was a failure
    failed_again: int = 0
    failures: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    #: ``--skip-ineligible``: the logins not to pull, and where their lines go
    ineligible: dict[str, IneligibleLogin] = dataclasses.field(default_factory=dict)
    written_ineligible: set[str] = dataclasses.field(default_factory=set)
    out: Output | None = None
    endpoint: str = ""

    async def todo(self, ids: BinaryIO, source: str) -> AsyncIterator[str]:
        """The ids to pull: those ``--resume`` does not skip."""
        async for login_id in read_ids(ids, source):
            self.read += 1
            key = login_id.lower()
            if key in self.state.ok:
                self.skipped += 1
            elif key in self.state.failed and self.skip_failed:
                self.skipped_failed += 1
            elif key in self.ineligible:  # a line saying it needs re-linking, once
                if key not in self.written_ineligible and self.out is not None:
                    self.out.write(ineligible_line(login_id, self.endpoint, self.ineligible[key]))
                    self.written_ineligible.add(key)
            else:
                yield login_id

    def write(self, out: Output, endpoint: str, r: Result[Any]) -> None:
        """A login's line, counted."""
        before = r.login_id.lower() in self.state.failed
        if r.error is None:
            assert isinstance(r.value, bytes)
            out.write(ok_line(r.login_id, endpoint, r.value))
            self.written_ok += 1
            self.ok_again += before
        else:
            reason = getattr(r.error, "flinks_code", None)
            self.failures[reason or type(r.error).__name__] += 1
            out.write(error_line(r.login_id, endpoint, r.error))
            self.written_failed += 1
            self.failed_again += before

    def not_pulled(self, results: object) -> int:
        """Ids of the file the fan-out will not pull: repeats and ineligible logins."""
        return int(getattr(results, "duplicates", 0)) + len(self.written_ineligible)

    def summary(self, out: str, requests: int, elapsed: float) -> list[str]:
        """The lines printed on stderr at the end, fitted to the terminal."""
        again = self.ok_again + self.failed_again
        clauses = [
            "flinks-async pull: "
            + _outcome(self.written_ok, "ok", self.ok_again, again)
            + ", "
            + _outcome(self.written_failed, "failed", self.failed_again, again)
            + (
                f", {len(self.written_ineligible)} ineligible (need re-linking, not pulled)"
                if self.out is not None  # --skip-ineligible
                else ""
            )
        ]
        if self.skipped:
            clauses.append(f"{self.skipped} skipped (already ok in {out})")
        if self.skipped_failed:
            clauses.append(f"{self.skipped_failed} failed before and skipped (--skip-failed)")
        if self.duplicates:
            clauses.append(f"{self.duplicates} repeated ids skipped")
        clauses.append(f"{requests} requests, {elapsed:.1f}s")
        lines = [fit("; ".join(clauses))]
        for reason, n in self.failures.most_common():
            lines.append(fit(f"  failed: {reason}: {n}", indent="    "))
        return lines


async def run(args: argparse.Namespace, job: PullJob) -> int:
    """Pull what ``job`` holds; the exit status (0 all ok, 1 some failed, 2 no ids)."""
    tally = _Tally(job.state, args.skip_failed)
    started = time.monotonic()
    try:
        await _pull(args, job, tally)
    finally:
        job.out.close()
        elapsed = time.monotonic() - started
        for line in tally.summary(args.out, job.client.requests_sent, elapsed):
            print(line, file=sys.stderr)
    if not tally.read:
        print(f"flinks-async: error: {args.login_ids}: no login ids", file=sys.stderr)
        return EXIT_USAGE
    # the exit status is the file's final state: a failure skipped with --skip-failed stays one
    return EXIT_FAILED_LOGINS if tally.written_failed or tally.skipped_failed else 0


async def _pull(args: argparse.Namespace, job: PullJob, tally: _Tally) -> None:
    """The fan-out, each result written as it comes, with the live line (and the webhook
    receiver): what stopped it (a bad id line, a circuit breaker) is raised bare."""
    client, progress = job.client, progress_display(args.progress, job.total)
    stopped: Exception | None = None  # raised bare after the task group, not in a group
    async with client, _receiving(client, job.receiver), anyio.create_task_group() as tg:
        tg.start_soon(progress.run)
        try:
            if args.skip_ineligible:  # the nightly routine: asked once, before any pull
                tally.ineligible = await _nightly.ineligible_logins(client)
                tally.out, tally.endpoint = job.out, job.endpoint
            async with client.many(
                args.endpoint,
                tally.todo(job.ids, args.login_ids),
                concurrency=args.concurrency,
                on_event=progress.hook,
                raw=True,
            ) as results:
                try:
                    async for r in results:
                        tally.write(job.out, job.endpoint, r)
                        if job.total is not None:  # repeats are not pulled: not to do
                            progress.total = job.total - tally.not_pulled(results)
                finally:
                    tally.duplicates = getattr(results, "duplicates", 0)
                    if job.total is not None:
                        progress.total = job.total - tally.not_pulled(results)
        except Exception as exc:  # a bad id line, the circuit breakers: usage errors
            stopped = exc
        tg.cancel_scope.cancel()
    if stopped is not None:
        raise stopped


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
