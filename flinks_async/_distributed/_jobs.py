"""The producer's side of a distributed pull: :func:`enqueue` and :func:`retry_failed`
put logins on the queue, :func:`status`, :func:`collect` and :func:`purge` read and end a
job (rules in :mod:`flinks_async._distributed`); and the keys a job owns in Redis."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

from .._errors import (
    ConfigurationError,
    CoordinationError,
)
from .._jsonl import Output
from .._redact import shown_redis_url
from .._redis._connection import redis_errors

__all__ = [
    "DEFAULT_TTL",
    "PREFIX",
    "QUEUE",
    "WORKERS",
    "JobStatus",
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


async def enqueue(
    redis_url: str,
    login_ids: Iterable[str] | AsyncIterable[str],
    *,
    job: str,
    endpoint: str = "investments",
    ttl: float = DEFAULT_TTL,
) -> tuple[int, int]:
    """Record and queue every login of ``job`` not recorded yet; return (new, already
    known). A known login is not queued again (see :func:`retry_failed`)."""
    check_job(job)
    if ttl <= 0:
        raise ConfigurationError("the job's ttl must be > 0 seconds")
    pool = await open_pool(redis_url)
    new = known = 0
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
            nonlocal new, known
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
            for key in keys:
                if key in fresh:
                    fresh.discard(key)  # a duplicate within the chunk is queued once
                    await pool.enqueue_job("pull_login", job, endpoint, key, _job_id=f"{job}:{key}")
            chunk.clear()

        async for login_id in _ids(login_ids):
            chunk.append(login_id)
            if len(chunk) >= _CHUNK:
                await flush()
        if chunk:
            await flush()
    finally:
        await pool.aclose()
    return new, known


async def retry_failed(redis_url: str, *, job: str) -> int:
    """Put the logins of ``job`` whose line says they failed back on the queue (their line
    is removed until they end again); return how many."""
    check_job(job)
    pool = await open_pool(redis_url)
    try:
        endpoint = await _job_endpoint(pool, job)
        failed: list[str] = []
        async for key, line in pool.hscan_iter(job_key(job, "results")):
            if b'"ok":false' in line[:400]:
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
    in_flight: int  #: held by a worker right now
    workers: int  #: workers alive on this Redis (any job)


async def status(redis_url: str, *, job: str) -> JobStatus:
    """Count a job's logins by state, streaming its lines (memory stays flat)."""
    check_job(job)
    pool = await open_pool(redis_url)
    try:
        await _job_endpoint(pool, job)
        logins = await pool.hlen(job_key(job, "ids"))
        done = failed = 0
        async for _, line in pool.hscan_iter(job_key(job, "results")):
            if b'"ok":false' in line[:400]:
                failed += 1
            else:
                done += 1
        in_flight = 0
        async for _ in pool.scan_iter(match=f"arq:in-progress:{job}:*", count=1000):
            in_flight += 1
        workers = 0
        async for _ in pool.scan_iter(match=f"{WORKERS}*", count=1000):
            workers += 1
    finally:
        await pool.aclose()
    return JobStatus(logins, done, failed, max(logins - done - failed, 0), in_flight, workers)


async def collect(
    redis_url: str, *, job: str, out: str, overwrite: bool = False, delete: bool = False
) -> tuple[int, int, int]:
    """Write every stored line of ``job`` to ``out``; return (lines, failed, pending).

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
                failed += b'"ok":false' in line[:400]
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


async def purge(redis_url: str, *, job: str) -> int:
    """Delete every key of ``job`` and its queued work; return how many keys went."""
    check_job(job)
    pool = await open_pool(redis_url)
    try:
        await _job_endpoint(pool, job)
        return await _purge(pool, job)
    finally:
        await pool.aclose()


async def _purge(pool: Any, job: str) -> int:
    gone = await pool.delete(*(job_key(job, part) for part in ("meta", "ids", "state", "results")))
    async for name in pool.scan_iter(match=f"arq:job:{job}:*", count=1000):
        job_id = name.decode()[len("arq:job:") :]
        await pool.zrem(QUEUE, job_id)
        gone += await pool.delete(name)
    return int(gone)


# --- the worker ---------------------------------------------------------------------
