"""The distributed pull's commands (arq on Redis, the ``queue`` extra): ``enqueue``,
``worker``, ``collect``, ``status`` and ``purge``; the work is in
:mod:`flinks_async._distributed`."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import anyio

from .._client import FlinksClient
from .._cmdline import UsageError, number, read_secret
from .._endpoints import ENDPOINTS
from .._errors import CoordinationError
from .._redact import shown_redis_url
from . import _nightly
from ._idsource import open_ids, read_ids
from ._pull import EXIT_FAILED_LOGINS

__all__ = ["COMMANDS", "add_parsers", "run"]


def add_parsers(sub: Any) -> None:
    """The queue commands and their options, on the command line's subparsers."""
    _add_enqueue(sub)
    _add_worker(sub)
    _add_collect(sub)
    _add_status_and_purge(sub)


def _add_enqueue(sub: Any) -> None:
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
        type=number(float, 1),
        default=7 * 24 * 3600,
        help="seconds the job's keys (ids, results) live after their last write (7 days)",
    )
    _nightly.add_arguments(q)  # the Flinks client: FLINKS_CUSTOMER_ID, FLINKS_BASE_URL...


def _add_worker(sub: Any) -> None:
    w = sub.add_parser(
        "worker",
        help="run a queue worker (arq)",
        description="Run an arq worker pulling queued logins with one FlinksClient, configured "
        "from FLINKS_* variables (FLINKS_REDIS_URL: one rate limit and one single-flight for "
        "all workers, checked at start-up; FLINKS_RATE_LIMIT, FLINKS_POLL_INTERVAL, "
        "FLINKS_POLL_TIMEOUT, FLINKS_WORKER_CONCURRENCY, FLINKS_JOB_SLICE, FLINKS_JOB_TRIES, "
        "FLINKS_JOB_BACKOFF, FLINKS_WORKER_PROGRESS, FLINKS_WORKER_HEARTBEAT). Logs a line at "
        "start-up, a progress line every FLINKS_WORKER_PROGRESS seconds (30) and its counts "
        "when it stops; beats every FLINKS_WORKER_HEARTBEAT seconds (1; `status` counts it "
        "alive until 5 beats are missed); survives the queue's Redis going "
        "away (reconnects). On SIGINT/SIGTERM it stops at once: its logins go back on the "
        "queue and resume their session on another worker.",
    )
    w.add_argument("--redis", required=True, help="redis:// or rediss:// URL of the queue")
    w.add_argument(
        "--burst", action="store_true", help="stop once the queue is empty (default: wait)"
    )


def _add_collect(sub: Any) -> None:
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
    c.add_argument(
        "--delete", action="store_true", help="purge the job once written (as `purge` does)"
    )


def _add_status_and_purge(sub: Any) -> None:
    for name, text in (
        (
            "status",
            "show where a distributed pull stands: its logins by state, those the live "
            "workers hold, and the workers alive (a heartbeat less than 5 s old)",
        ),
        (
            "purge",
            "stop a distributed pull and delete every key that names it, the queue's "
            "included: its queued logins are dropped, those in progress stopped at once "
            "(it waits for them to end), and no worker writes anything for it afterwards",
        ),
    ):
        x = sub.add_parser(
            name, help=text.split(":")[0], description=text[0].upper() + text[1:] + "."
        )
        x.add_argument("--redis", required=True, help="redis:// or rediss:// URL of the queue")
        x.add_argument("--job", required=True, help="the name given to enqueue")


COMMANDS = ("enqueue", "worker", "collect", "status", "purge")


def run(args: argparse.Namespace) -> int:
    """``enqueue`` / ``worker`` / ``collect`` / ``status`` / ``purge``: the distributed
    pull (arq). Redis unreachable is one line and exit status 2, as for ``pull``."""
    from .. import queue

    try:
        return anyio.run(_queue_async, args, queue)
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
        if args.retry_failed and args.skip_ineligible:
            raise UsageError("--skip-ineligible goes with --login-ids (not --retry-failed)")
        if args.retry_failed:
            n = await dist.retry_failed(args.redis, job=args.job)
            print(f"re-queued {n} failed logins of job {args.job}", file=sys.stderr)
            return 0
        return await _enqueue(args, dist)
    if args.command == "status":
        st = await dist.status(args.redis, job=args.job)
        print(
            f"job {args.job}: {st.logins} logins, {st.done} done, {st.failed} failed, "
            + (f"{st.ineligible} ineligible (need re-linking), " if st.ineligible else "")
            + f"{st.pending} pending, {st.in_flight} in flight; {st.workers} workers alive"
        )
        return 0
    if args.command == "purge":
        print(_purged(args.job, await dist.purge(args.redis, job=args.job)), file=sys.stderr)
        return 0
    lines, failed, pending = await dist.collect(
        args.redis, job=args.job, out=args.out, overwrite=args.overwrite
    )
    print(
        f"{lines} logins written to {args.out} ({failed} failed), {pending} pending",
        file=sys.stderr,
    )
    if args.delete:
        print(_purged(args.job, await dist.purge(args.redis, job=args.job)), file=sys.stderr)
    return 0 if pending == 0 and failed == 0 else EXIT_FAILED_LOGINS


async def _enqueue(args: argparse.Namespace, dist: Any) -> int:
    """``enqueue --login-ids``; with ``--skip-ineligible``, Flinks' nightly refresh status
    asked once first (the client from ``FLINKS_*`` variables)."""
    ineligible = None
    if args.skip_ineligible:
        key = read_secret(args.nightly_key_file, _nightly.KEY_ENV)
        _nightly.check(args, key)
        async with FlinksClient(nightly_refresh_key=key) as client:
            ineligible = await _nightly.ineligible_logins(client)
    ids = read_ids(open_ids(args.login_ids), args.login_ids)
    done = await dist.enqueue(
        args.redis, ids, job=args.job, endpoint=args.endpoint, ttl=args.ttl, ineligible=ineligible
    )
    new, known = done
    said = f"enqueued {new - done.ineligible} logins for job {args.job} ({known} already known"
    if ineligible is not None:
        said += f", {done.ineligible} ineligible: not queued, their lines say re-link"
    print(said + ")", file=sys.stderr)
    return 0


def _purged(job: str, purged: Any) -> str:
    return (
        f"purged job {job}: {purged.stopped} logins in progress stopped, {purged.queued} "
        f"queued logins dropped, {purged.keys} keys deleted (the queue's included); "
        "nothing of it is left on this Redis"
    )
