"""The producer's side of a distributed pull: :func:`enqueue` and :func:`retry_failed`
put logins on the queue, :func:`status`, :func:`collect` and :func:`purge` read and end a
job (rules in :mod:`flinks_async._distributed`); and the keys a job owns in Redis."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any

import anyio
import msgspec

from .._endpoints import endpoint_named
from .._errors import (
    ConfigurationError,
    CoordinationError,
)
from .._files._jsonl import INELIGIBLE, Output, ineligible_line
from .._management_models import IneligibleLogin
from .._redact import shown_redis_url
from .._redis._connection import redis_errors

__all__ = [
    "DEFAULT_TTL",
    "PREFIX",
    "QUEUE",
    "WORKERS",
    "Enqueued",
    "JobStatus",
    "Purged",
    "UnknownJobError",
    "arq_module",
    "check_job",
    "collect",
    "enqueue",
    "job_key",
    "login_key",
    "open_pool",
    "purge",
    "retry_failed",
    "status",
]

#: the arq queue every flinks-async worker reads
QUEUE = "flinks-async"
#: how long a job's keys live after their last write (seconds): 7 days
DEFAULT_TTL = 7 * 24 * 3600
_CHUNK = 500
PREFIX = "flinks-async:job:"
WORKERS = "flinks-async:worker:"


class UnknownJobError(ConfigurationError):
    """No job of that name on this Redis (never enqueued, purged, or expired)."""


def arq_module() -> Any:
    try:
        import arq
        import arq.connections
    except ImportError:
        raise ConfigurationError(
            "distributed pulls need the queue extra: pip install 'flinks-async[queue]'"
        ) from None
    return arq


def login_key(login_id: str) -> str:
    return hashlib.sha256(login_id.strip().lower().encode()).hexdigest()[:32]


def job_key(job: str, part: str) -> str:
    return f"{PREFIX}{job}:{part}"


def check_job(job: str) -> str:
    if not job or any(c in job for c in " :*?[]\n\t"):
        raise ConfigurationError("a job name is one word without ':', '*', '?', '[' or spaces")
    return job


async def open_pool(redis_url: str) -> Any:
    arq = arq_module()
    settings = arq.connections.RedisSettings.from_dsn(redis_url)
    settings.conn_retries = 0  # one attempt: the caller says what failed, in one line
    try:
        return await arq.create_pool(settings, default_queue_name=QUEUE)
    except (OSError, redis_errors()) as exc:
        raise CoordinationError(
            f"the queue's Redis at {shown_redis_url(redis_url)} is unreachable: "
            f"{type(exc).__name__}"
        ) from None


async def _ids(login_ids: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[str]:
    """The non-blank, stripped ids of a sync or async source."""
    if isinstance(login_ids, AsyncIterable):
        async for login_id in login_ids:
            if login_id.strip():
                yield login_id.strip()
    else:
        for login_id in login_ids:
            if login_id.strip():
                yield login_id.strip()


class Enqueued(tuple[int, int]):
    """What :func:`enqueue` did: ``(new, known)``, and ``.ineligible``: how many of the
    new logins were not queued, their line saying they need re-linking."""

    ineligible: int

    def __new__(cls, new: int, known: int, ineligible: int = 0) -> Enqueued:
        done = super().__new__(cls, (new, known))
        done.ineligible = ineligible
        return done


async def enqueue(
    redis_url: str,
    login_ids: Iterable[str] | AsyncIterable[str],
    *,
    job: str,
    endpoint: str = "investments",
    ttl: float = DEFAULT_TTL,
    ineligible: Mapping[str, IneligibleLogin] | None = None,
) -> Enqueued:
    """Record and queue every login of ``job`` not recorded yet; return (new, already
    known). A known login is not queued again (see :func:`retry_failed`). The logins of
    ``ineligible`` (by lower-cased id: ``NightlyRefreshStatus.by_login_id()``) are not
    queued: their line says they need re-linking (:class:`Enqueued`, :func:`status`)."""
    check_job(job)
    skip, name = ineligible or {}, endpoint_named(endpoint).flinks_name
    if ttl <= 0:
        raise ConfigurationError("the job's ttl must be > 0 seconds")
    pool = await open_pool(redis_url)
    new = known = relink = 0
    ttl_ms = int(ttl * 1000)
    try:
        meta = job_key(job, "meta")
        await pool.hsetnx(meta, "endpoint", endpoint)
        await pool.hsetnx(meta, "created", str(time.time()))
        await pool.hset(meta, "ttl", str(ttl))
        stored = (await pool.hget(meta, "endpoint")).decode()
        if stored != endpoint:
            raise ConfigurationError(f"job {job} pulls {stored}, not {endpoint}")
        chunk: list[str] = []

        async def flush() -> None:
            nonlocal new, known, relink
            keys = [login_key(i) for i in chunk]
            async with pool.pipeline(transaction=False) as pipe:
                for login_id, key in zip(chunk, keys, strict=True):
                    pipe.hsetnx(job_key(job, "ids"), key, login_id)
                pipe.pexpire(job_key(job, "ids"), ttl_ms)
                pipe.pexpire(meta, ttl_ms)
                added = (await pipe.execute())[: len(chunk)]
            fresh = {key for key, was_added in zip(keys, added, strict=True) if was_added}
            known += len(chunk) - len(fresh)
            new += len(fresh)
            for login_id, key in zip(chunk, keys, strict=True):
                if key in fresh:
                    fresh.discard(key)  # a duplicate within the chunk is queued once
                    info = skip.get(login_id.lower())
                    line = ineligible_line(login_id, name, info) if info else None
                    relink += await _place(pool, job, endpoint, key, ttl_ms, line)
            chunk.clear()

        async for login_id in _ids(login_ids):
            chunk.append(login_id)
            if len(chunk) >= _CHUNK:
                await flush()
        if chunk:
            await flush()
    finally:
        await pool.aclose()
    return Enqueued(new, known, relink)


async def _place(
    pool: Any,
    job: str,
    endpoint: str,
    key: str,
    ttl_ms: int,
    line: bytes | None,
) -> bool:
    """Queue a new login of ``job``; or store ``line`` for it instead, one saying it
    needs re-linking (True)."""
    if line is None:
        await pool.enqueue_job("pull_login", job, endpoint, key, _job_id=f"{job}:{key}")
        return False
    await pool.hset(job_key(job, "results"), key, line)
    await pool.pexpire(job_key(job, "results"), ttl_ms)
    return True


async def retry_failed(redis_url: str, *, job: str) -> int:
    """Put the logins of ``job`` whose line says they failed back on the queue (their line
    is removed until they end again); return how many."""
    check_job(job)
    pool = await open_pool(redis_url)
    try:
        endpoint = await _job_endpoint(pool, job)
        failed: list[str] = []
        async for key, line in pool.hscan_iter(job_key(job, "results")):
            if b'"ok":false' in line[:400] and INELIGIBLE not in line[:400]:
                failed.append(key.decode())
        for key in failed:
            await pool.hdel(job_key(job, "results"), key)
            await pool.hdel(job_key(job, "state"), key)
            again = f"{job}:{key}:{uuid.uuid4().hex[:8]}"
            await pool.enqueue_job("pull_login", job, endpoint, key, _job_id=again)
    finally:
        await pool.aclose()
    return len(failed)


async def _job_endpoint(pool: Any, job: str) -> str:
    endpoint = await pool.hget(job_key(job, "meta"), "endpoint")
    if endpoint is None:
        raise UnknownJobError(
            f"no job named {job!r} on this Redis (purged, expired, or never enqueued)"
        )
    return str(endpoint.decode())


@dataclasses.dataclass(frozen=True, slots=True)
class JobStatus:
    """Where a job stands (:func:`status`)."""

    logins: int  #: recorded by enqueue
    done: int  #: ended ok
    failed: int  #: ended with a final error
    pending: int  #: not ended yet
    in_flight: int  #: held right now by the live workers (at most their capacity)
    workers: int  #: alive on this Redis (any job): beat within 5 beats (5 s by default)
    #: not pulled: no longer eligible for nightly refresh, need re-linking (not in failed)
    ineligible: int = 0


async def status(redis_url: str, *, job: str) -> JobStatus:
    """Count a job's logins by state, streaming its lines (memory stays flat).

    Workers and logins in flight are read from the live workers' heartbeats (each says
    how many logins of each job it holds and how many it can hold), never from the
    queue's marks, which outlive a killed worker or a restarted Redis."""
    check_job(job)
    pool = await open_pool(redis_url)
    try:
        await _job_endpoint(pool, job)
        logins = await pool.hlen(job_key(job, "ids"))
        done = failed = ineligible = 0
        async for _, line in pool.hscan_iter(job_key(job, "results")):
            if INELIGIBLE in line[:400]:
                ineligible += 1
            elif b'"ok":false' in line[:400]:
                failed += 1
            else:
                done += 1
        names = [name async for name in pool.scan_iter(match=f"{WORKERS}*", count=1000)]
        beats = await pool.mget(names) if names else []
    finally:
        await pool.aclose()
    workers = in_flight = 0
    for raw in beats:
        if raw is None:  # expired between the scan and the read: dead
            continue
        workers += 1
        with contextlib.suppress(ValueError, TypeError, AttributeError, msgspec.DecodeError):
            beat = msgspec.json.decode(raw)
            held = int(beat.get("jobs", {}).get(job, 0))
            in_flight += max(0, min(held, int(beat.get("concurrency", held))))
    pending = max(logins - done - failed - ineligible, 0)
    return JobStatus(logins, done, failed, pending, min(in_flight, pending), workers, ineligible)


async def collect(
    redis_url: str, *, job: str, out: str, overwrite: bool = False, delete: bool = False
) -> tuple[int, int, int]:
    """Write every stored line of ``job`` to ``out``; return (lines, failed, pending)
    (``failed`` leaves out the lines of ineligible logins: they need re-linking).

    Streams the job's hash (``HSCAN``): memory stays flat however big the job. Refuses a
    non-empty ``out`` unless ``overwrite``; ``delete`` purges the job once written."""
    check_job(job)
    _check_output(out, overwrite)
    pool = await open_pool(redis_url)
    lines = failed = 0
    try:
        await _job_endpoint(pool, job)
        total = await pool.hlen(job_key(job, "ids"))
        output = Output(out, truncate=True)
        try:
            async for _, line in pool.hscan_iter(job_key(job, "results"), count=200):
                output.write(line)
                lines += 1
                failed += b'"ok":false' in line[:400] and INELIGIBLE not in line[:400]
        finally:
            output.close()
        if delete:
            await _purge(pool, job)
    finally:
        await pool.aclose()
    return lines, failed, max(total - lines, 0)


def _check_output(out: str, overwrite: bool) -> None:
    if out != "-" and not overwrite and os.path.exists(out) and os.path.getsize(out) > 0:
        raise ConfigurationError(f"{out} is not empty: pass --overwrite to replace it")


class Purged(int):
    """What :func:`purge` removed. As an ``int`` it is the number of keys deleted, what
    :func:`purge` returned before it said more (code that used the count keeps working).
    """

    queued: int  #: logins taken off the queue before any worker had them
    stopped: int  #: logins a worker was pulling: stopped (arq's abort), then cleared

    def __new__(cls, keys: int, queued: int, stopped: int) -> Purged:
        purged = super().__new__(cls, keys)
        purged.queued, purged.stopped = queued, stopped
        return purged

    @property
    def keys(self) -> int:
        """Keys deleted: the job's own and the queue's records of its logins."""
        return int(self)

    def __repr__(self) -> str:
        return f"Purged(keys={int(self)}, queued={self.queued}, stopped={self.stopped})"

    def __str__(self) -> str:
        return str(int(self))


_POLL = 0.05  # how often purge looks whether the stopped logins are gone


async def purge(redis_url: str, *, job: str) -> Purged:
    """Stop ``job`` and delete every key that names it, the queue's (arq) included.

    The job's own keys go first, in one command: from then on a worker writes nothing
    for it (its writes are conditional on the job), and a queued login of it is dropped
    when a worker takes it. Its queued logins leave the queue; the logins workers are
    pulling are stopped through arq's abort (a worker sees it within 0.1 s and cancels
    them); purge waits until none is left in progress (a killed worker's mark lapses
    within ``job_timeout + 10`` s: 50 s by default), then sweeps again. A job already
    purged but with records of the queue left is swept too."""
    check_job(job)
    pool = await open_pool(redis_url)
    try:
        if not await pool.exists(job_key(job, "meta")) and not await _arq_ids(pool, job):
            await _job_endpoint(pool, job)  # raises UnknownJobError
        return await _purge(pool, job)
    finally:
        await pool.aclose()


async def _arq_ids(pool: Any, job: str) -> dict[str, set[str]]:
    """The arq job ids of ``job`` by where arq holds them: queued, in progress, and the
    ids of its other keys (job definition, retry count, result, abort mark)."""
    found: dict[str, set[str]] = {}
    async for member, _ in pool.zscan_iter(QUEUE, match=f"{job}:*", count=1000):
        found.setdefault("queued", set()).add(member.decode())
    async for member, _ in pool.zscan_iter(_ABORT, match=f"{job}:*", count=1000):
        found.setdefault("abort", set()).add(member.decode())
    for prefix in _ARQ_KEYS:
        async for name in pool.scan_iter(match=f"{prefix}{job}:*", count=1000):
            found.setdefault(prefix, set()).add(name.decode()[len(prefix) :])
    return found


_IN_PROGRESS = "arq:in-progress:"
_ABORT = "arq:abort"  # arq's sorted set of job ids to cancel
_ARQ_KEYS = ("arq:job:", "arq:retry:", "arq:result:", _IN_PROGRESS)


async def _purge(pool: Any, job: str) -> Purged:
    gone = await pool.delete(*(job_key(job, part) for part in ("meta", "ids", "state", "results")))
    found = await _arq_ids(pool, job)
    queued = found.get("queued", set()) - found.get(_IN_PROGRESS, set())
    running = found.get(_IN_PROGRESS, set())
    if running:  # arq's abort: each worker cancels those it runs, within its poll delay
        now = int(time.time() * 1000)
        await pool.zadd(_ABORT, dict.fromkeys(running, now))
    gone += await _sweep(pool, job, found, keep_running=True)
    # wait for the stopped logins: a worker's mark goes when it ends the login, a killed
    # worker's when it lapses (the longest time to live of those marks bounds the wait)
    marks = [f"{_IN_PROGRESS}{job_id}" for job_id in running]
    deadline = time.monotonic() + await _longest_ttl(pool, marks) + 1
    while marks and time.monotonic() < deadline:  # EXISTS on known keys: no keyspace scan
        if not await pool.exists(*marks):
            break
        await anyio.sleep(_POLL)
    found = await _arq_ids(pool, job)
    for _ in range(20):  # what a login ending meanwhile left (arq re-queues a slice it ended)
        gone += await pool.delete(*(job_key(job, p) for p in ("meta", "ids", "state", "results")))
        gone += await _sweep(pool, job, found, keep_running=False)
        found = await _arq_ids(pool, job)
        if not found:
            break
        await anyio.sleep(_POLL * 4)
    return Purged(int(gone), len(queued), len(running))


async def _longest_ttl(pool: Any, names: list[str]) -> float:
    """The longest time to live of ``names``, in seconds (0 for none)."""
    async with pool.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.pttl(name)
        ttls = await pipe.execute() if names else []
    return max([0, *(int(t) for t in ttls)]) / 1000


async def _sweep(pool: Any, job: str, found: dict[str, set[str]], *, keep_running: bool) -> int:
    """Delete what ``found`` lists (not the marks of logins in progress and their abort,
    ``keep_running``); return how many keys went."""
    gone = 0
    for zset, members in ((QUEUE, found.get("queued", set())), (_ABORT, found.get("abort", set()))):
        if zset == _ABORT and keep_running:
            continue
        listed = list(members)
        for start in range(0, len(listed), _CHUNK):
            await pool.zrem(zset, *listed[start : start + _CHUNK])
    names = [
        prefix + job_id
        for prefix in _ARQ_KEYS
        if not (keep_running and prefix == _IN_PROGRESS)
        for job_id in found.get(prefix, ())
    ]
    for start in range(0, len(names), _CHUNK):
        gone += await pool.delete(*names[start : start + _CHUNK])
    return int(gone)


# --- the worker ---------------------------------------------------------------------
