"""Bulk pulls spread over many processes and machines, on the arq job queue
(``pip install 'flinks-async[queue]'``).

* :func:`enqueue` puts one arq job per login on the queue ``flinks-async`` of a Redis.
  A job's id is ``{job}:{hash of the login id}``, so enqueueing the same ids twice (or a
  login already pulled in that job) does not pull twice. The ids are read lazily and sent
  in pipelined chunks of 500.
* :class:`WorkerSettings` is an arq worker (``flinks-async worker``, or ``arq
  flinks_async.queue.WorkerSettings``): each worker process holds one
  :class:`~flinks_async.FlinksClient` for its lifetime, built from the ``FLINKS_*``
  environment (``FLINKS_REDIS_URL`` makes every worker share one rate limit and one
  single-flight), and runs up to ``FLINKS_WORKER_CONCURRENCY`` (50) logins at once.
* Each login's outcome is stored as the line ``flinks-async pull`` would write, in one
  Redis hash per job (field: the hash of the login id), so a login retried after a crash
  still has exactly one line: the last. :func:`collect` writes them as JSONL and says how
  many logins are still pending.

Crash safety is arq's: a job stays on the queue until it finished; a worker killed with
-9 leaves its in-progress marks to expire (``job_timeout`` + 10 s; ``job_timeout`` =
``FLINKS_JOB_TIMEOUT``, else ``FLINKS_POLL_TIMEOUT`` (1800 s) + 60 s), then another worker
runs those logins again (up to 5 tries). A Flinks error is not a crash: it is the login's
line (``ok: false``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable, Iterable
from typing import Any

from ._client import FlinksClient
from ._errors import ConfigurationError, FlinksError
from ._jsonl import Output, error_line, ok_line

__all__ = ["QUEUE", "WorkerSettings", "collect", "enqueue", "pull_login"]

#: the arq queue every flinks-async worker reads
QUEUE = "flinks-async"
_CHUNK = 500


def _arq() -> Any:
    try:
        import arq
        import arq.connections
    except ImportError:
        raise ConfigurationError(
            "distributed pulls need the queue extra: pip install 'flinks-async[queue]'"
        ) from None
    return arq


def _login_key(login_id: str) -> str:
    return hashlib.sha256(login_id.strip().lower().encode()).hexdigest()[:32]


def _results_key(job: str) -> str:
    return f"flinks-async:job:{job}:results"


def _ids_key(job: str) -> str:
    return f"flinks-async:job:{job}:ids"


def _check_job(job: str) -> str:
    if not job or any(c in job for c in " :\n\t"):
        raise ConfigurationError("a job name is one word without ':' or spaces")
    return job


async def _pool(redis_url: str) -> Any:
    arq = _arq()
    settings = arq.connections.RedisSettings.from_dsn(redis_url)
    return await arq.create_pool(settings, default_queue_name=QUEUE)


async def enqueue(
    redis_url: str,
    login_ids: Iterable[str] | AsyncIterable[str],
    *,
    job: str,
    endpoint: str = "investments",
) -> tuple[int, int]:
    """Put every login on the queue for ``job``; return (new logins, already known)."""
    _check_job(job)
    pool = await _pool(redis_url)
    new = known = 0
    try:
        chunk: list[str] = []

        async def flush() -> None:
            nonlocal new, known
            keys = [_login_key(i) for i in chunk]
            added = await pool.sadd(_ids_key(job), *keys)
            new += added
            known += len(chunk) - added
            for login_id, key in zip(chunk, keys, strict=True):
                await pool.enqueue_job(
                    "pull_login", job, endpoint, login_id, _job_id=f"{job}:{key}"
                )
            chunk.clear()

        if isinstance(login_ids, AsyncIterable):
            async for login_id in login_ids:
                chunk.append(login_id.strip())
                if len(chunk) >= _CHUNK:
                    await flush()
        else:
            for login_id in login_ids:
                if login_id.strip():
                    chunk.append(login_id.strip())
                if len(chunk) >= _CHUNK:
                    await flush()
        if chunk:
            await flush()
    finally:
        await pool.aclose()
    return new, known


async def pull_login(ctx: dict[str, Any], job: str, endpoint: str, login_id: str) -> bool:
    """The arq job: pull one login, store its line. True when it ended ok."""
    client: FlinksClient = ctx["flinks"]
    try:
        body = await client.fetch(endpoint, login_id, raw=True)
        line, ok = ok_line(login_id, _endpoint_name(endpoint), body), True
    except FlinksError as exc:
        line, ok = error_line(login_id, _endpoint_name(endpoint), exc), False
    await ctx["redis"].hset(_results_key(job), _login_key(login_id), line)
    return ok


def _endpoint_name(endpoint: str) -> str:
    from ._polling import ENDPOINTS

    spec = ENDPOINTS.get(endpoint)
    return spec.name if spec is not None else endpoint


async def _startup(ctx: dict[str, Any]) -> None:
    timeout = float(os.environ.get("FLINKS_POLL_TIMEOUT", "1800"))
    ctx["flinks"] = FlinksClient(
        poll_interval=float(os.environ.get("FLINKS_POLL_INTERVAL", "10")),
        poll_timeout=timeout,
        rate_limit=float(os.environ["FLINKS_RATE_LIMIT"])
        if os.environ.get("FLINKS_RATE_LIMIT")
        else None,
    )


async def _shutdown(ctx: dict[str, Any]) -> None:
    await ctx["flinks"].aclose()


class WorkerSettings:
    """arq settings of a flinks-async worker (see the module docstring)."""

    functions = [pull_login]  # noqa: RUF012 - arq reads these class attributes
    queue_name = QUEUE
    on_startup = _startup
    on_shutdown = _shutdown
    max_jobs = int(os.environ.get("FLINKS_WORKER_CONCURRENCY", "50"))
    job_timeout = float(
        os.environ.get("FLINKS_JOB_TIMEOUT")
        or float(os.environ.get("FLINKS_POLL_TIMEOUT", "1800")) + 60
    )
    max_tries = 5
    keep_result = 3600
    poll_delay = 0.1
    redis_settings: Any = None  # set from the URL by `flinks-async worker`


async def collect(redis_url: str, *, job: str, out: str) -> tuple[int, int]:
    """Write every stored line of ``job`` to ``out`` (replaced); return (lines, pending)."""
    _check_job(job)
    pool = await _pool(redis_url)
    try:
        lines: dict[bytes, bytes] = await pool.hgetall(_results_key(job))
        total = await pool.scard(_ids_key(job))
    finally:
        await pool.aclose()
    output = Output(out, truncate=True)
    try:
        for line in lines.values():
            output.write(line)
    finally:
        output.close()
    return len(lines), total - len(lines)
