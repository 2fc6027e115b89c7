"""Bulk pulls spread over many processes and machines, on the arq job queue
(``pip install 'flinks-async[queue]'``).

* :func:`enqueue` records each login of a job once (``HSETNX`` in the job's ids hash) and
  puts an arq job on the queue ``flinks-async`` **only for a login it has just recorded**:
  a login it calls known is never pulled again (``retry_failed=True`` re-queues the
  logins whose line says they failed). Blank ids are skipped, sync or async source.
* A **worker** (:func:`run_worker`, ``flinks-async worker``) holds one
  :class:`~flinks_async.FlinksClient` for its lifetime, built from the ``FLINKS_*``
  environment, and runs up to ``FLINKS_WORKER_CONCURRENCY`` (50) logins at once.
* A login is pulled in **slices** of ``FLINKS_JOB_SLICE`` seconds (20): Authorize once,
  store the session (its ``RequestId``) in Redis, poll for at most a slice, and if the
  answer is still pending, go back on the queue to carry on *the same session* from any
  worker. arq marks a running job for ``job_timeout + 10`` s (``job_timeout`` =
  ``max(2 * slice, slice + 5)`` = 40 s), so a worker killed with -9 leaves its logins to
  another worker within about **50 s**, and they resume polling where they were: no second
  Authorize unless the kill fell between the Authorize and the write of its session (at
  most once more).
* Only a final answer is a login's line: a Flinks error that retrying cannot change
  (INVALID_LOGIN, DISABLED_LOGIN, ...), a body that is not the expected JSON, or still
  pending after ``FLINKS_POLL_TIMEOUT`` (1800 s) counted from the first slice. Transient
  trouble (Redis unavailable, network errors, 5xx or rate limiting after the client's own
  retries, an unexpected error) goes back on the queue after a backoff of
  ``FLINKS_JOB_BACKOFF * 2**(n-1)`` seconds (5 s; at most 300 s), up to
  ``FLINKS_JOB_TRIES`` (5) times; then the last error is the line. So does an
  ``UNAUTHORIZED`` or a 404 without a FlinksCode from an endpoint that has not yet answered
  this worker (the key may be wrong, not the login); once the set-up breaker trips
  (:class:`~flinks_async.SetupError`), the worker stops (exit 2, one line) and every login
  it held goes back on the queue without a line.
* Each login's line is stored as ``flinks-async pull`` would write it, in one Redis hash
  per job (field: a hash of the login id), so a login has exactly one line: the last.
  :func:`collect` streams them (``HSCAN``) to a JSONL file.

Every key a job creates expires ``ttl`` seconds (``enqueue --ttl``, default 7 days) after
its last write: ``flinks-async:job:{job}:meta`` / ``:ids`` (login ids: personal data) /
``:state`` (sessions in progress) / ``:results`` (the lines: personal data). The queue's
own records hold the job name and a hash of the login id, never the id. :func:`purge`
(``collect --delete`` / ``flinks-async purge``) removes a job at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import random
import secrets
import signal
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import msgspec

from ._client import FlinksClient
from ._errors import (
    ClientClosedError,
    ConfigurationError,
    CoordinationError,
    DecodeError,
    FlinksError,
    PollTimeoutError,
    SetupError,
    TransientAPIError,
    TransportError,
)
from ._jsonl import Output, error_line, ok_line
from ._redact import shown_redis_url
from ._redis._connection import redis_errors

__all__ = [
    "QUEUE",
    "JobStatus",
    "UnknownJobError",
    "WorkerSettings",
    "collect",
    "enqueue",
    "pull_login",
    "purge",
    "retry_failed",
    "run_worker",
    "status",
]

log = logging.getLogger("flinks_async")

#: the arq queue every flinks-async worker reads
QUEUE = "flinks-async"
#: how long a job's keys live after their last write (seconds): 7 days
DEFAULT_TTL = 7 * 24 * 3600
_CHUNK = 500
_PREFIX = "flinks-async:job:"
_WORKERS = "flinks-async:worker:"


class UnknownJobError(ConfigurationError):
    """No job of that name on this Redis (never enqueued, purged, or expired)."""


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclasses.dataclass(frozen=True, slots=True)
class _Config:
    """A worker's settings, from the environment (see the module docstring)."""

    slice: float = dataclasses.field(default_factory=lambda: _env_float("FLINKS_JOB_SLICE", 20))
    tries: int = dataclasses.field(default_factory=lambda: int(_env_float("FLINKS_JOB_TRIES", 5)))
    backoff: float = dataclasses.field(default_factory=lambda: _env_float("FLINKS_JOB_BACKOFF", 5))
    poll_timeout: float = dataclasses.field(
        default_factory=lambda: _env_float("FLINKS_POLL_TIMEOUT", 1800)
    )
    progress_every: float = dataclasses.field(
        default_factory=lambda: _env_float("FLINKS_WORKER_PROGRESS", 30)
    )


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


def _key(job: str, part: str) -> str:
    return f"{_PREFIX}{job}:{part}"


def _check_job(job: str) -> str:
    if not job or any(c in job for c in " :*?[]\n\t"):
        raise ConfigurationError("a job name is one word without ':', '*', '?', '[' or spaces")
    return job


async def _pool(redis_url: str) -> Any:
    arq = _arq()
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
    _check_job(job)
    if ttl <= 0:
        raise ConfigurationError("the job's ttl must be > 0 seconds")
    pool = await _pool(redis_url)
    new = known = 0
    ttl_ms = int(ttl * 1000)
    try:
        meta = _key(job, "meta")
        await pool.hsetnx(meta, "endpoint", endpoint)
        await pool.hsetnx(meta, "created", str(time.time()))
        await pool.hset(meta, "ttl", str(ttl))
        stored = (await pool.hget(meta, "endpoint")).decode()
        if stored != endpoint:
            raise ConfigurationError(f"job {job} pulls {stored}, not {endpoint}")
        chunk: list[str] = []

        async def flush() -> None:
            nonlocal new, known
            keys = [_login_key(i) for i in chunk]
            async with pool.pipeline(transaction=False) as pipe:
                for login_id, key in zip(chunk, keys, strict=True):
                    pipe.hsetnx(_key(job, "ids"), key, login_id)
                pipe.pexpire(_key(job, "ids"), ttl_ms)
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
    _check_job(job)
    pool = await _pool(redis_url)
    try:
        endpoint = await _job_endpoint(pool, job)
        failed: list[str] = []
        async for key, line in pool.hscan_iter(_key(job, "results")):
            if b'"ok":false' in line[:400]:
                failed.append(key.decode())
        for key in failed:
            await pool.hdel(_key(job, "results"), key)
            await pool.hdel(_key(job, "state"), key)
            again = f"{job}:{key}:{uuid.uuid4().hex[:8]}"
            await pool.enqueue_job("pull_login", job, endpoint, key, _job_id=again)
    finally:
        await pool.aclose()
    return len(failed)


async def _job_endpoint(pool: Any, job: str) -> str:
    endpoint = await pool.hget(_key(job, "meta"), "endpoint")
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
    _check_job(job)
    pool = await _pool(redis_url)
    try:
        await _job_endpoint(pool, job)
        logins = await pool.hlen(_key(job, "ids"))
        done = failed = 0
        async for _, line in pool.hscan_iter(_key(job, "results")):
            if b'"ok":false' in line[:400]:
                failed += 1
            else:
                done += 1
        in_flight = 0
        async for _ in pool.scan_iter(match=f"arq:in-progress:{job}:*", count=1000):
            in_flight += 1
        workers = 0
        async for _ in pool.scan_iter(match=f"{_WORKERS}*", count=1000):
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
    _check_job(job)
    _check_output(out, overwrite)
    pool = await _pool(redis_url)
    lines = failed = 0
    try:
        await _job_endpoint(pool, job)
        total = await pool.hlen(_key(job, "ids"))
        output = Output(out, truncate=True)
        try:
            async for _, line in pool.hscan_iter(_key(job, "results"), count=200):
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
    _check_job(job)
    pool = await _pool(redis_url)
    try:
        await _job_endpoint(pool, job)
        return await _purge(pool, job)
    finally:
        await pool.aclose()


async def _purge(pool: Any, job: str) -> int:
    gone = await pool.delete(*(_key(job, part) for part in ("meta", "ids", "state", "results")))
    async for name in pool.scan_iter(match=f"arq:job:{job}:*", count=1000):
        job_id = name.decode()[len("arq:job:") :]
        await pool.zrem(QUEUE, job_id)
        gone += await pool.delete(name)
    return int(gone)


# --- the worker ---------------------------------------------------------------------


def _transient(exc: BaseException) -> bool:
    """Whether retrying later may change the outcome (see the module docstring)."""
    if isinstance(exc, DecodeError):
        return exc.retryable
    return isinstance(
        exc, CoordinationError | TransportError | TransientAPIError | ClientClosedError
    ) or not isinstance(exc, FlinksError)


async def pull_login(ctx: dict[str, Any], job: str, endpoint: str, key: str) -> bool | None:
    """The arq job: one slice of one login (see the module docstring). True when it ended
    ok, False when it ended failed, None when it went back on the queue (or was purged)."""
    arq = _arq()
    redis = ctx["redis"]
    client: FlinksClient = ctx["flinks"]
    config: _Config = ctx["config"]
    stats: dict[str, int] = ctx["stats"]
    async with redis.pipeline(transaction=False) as pipe:  # one round trip
        pipe.hget(_key(job, "ids"), key)
        pipe.hget(_key(job, "meta"), "ttl")
        pipe.hget(_key(job, "state"), key)
        login, ttl, raw_state = await pipe.execute()
    if login is None or ttl is None:
        return None  # purged or expired: nothing to pull
    login_id, ttl_ms = login.decode(), int(float(ttl) * 1000)
    state: dict[str, Any] = msgspec.json.decode(raw_state) if raw_state else {}
    state.setdefault("started", time.time())
    state.setdefault("tries", 0)

    async def keep(**changes: Any) -> None:
        state.update(changes)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hset(_key(job, "state"), key, msgspec.json.encode(state))
            pipe.pexpire(_key(job, "state"), ttl_ms)
            await pipe.execute()

    name = _endpoint_name(endpoint)
    stats["in_flight"] += 1
    try:
        left = config.poll_timeout - (time.time() - state["started"])
        if left <= 0:
            raise PollTimeoutError(
                f"still pending after {config.poll_timeout:.0f}s (FLINKS_POLL_TIMEOUT)",
                attempts=0,
                elapsed=time.time() - state["started"],
                login_id=login_id,
                request_id=state.get("rid"),
                endpoint=name,
            )
        part = min(config.slice, left)
        async with asyncio.timeout(_job_timeout() - 1):  # within arq's own job timeout
            if not state.get("rid"):  # the first slice: its start counts for poll_timeout
                auth = await client.authorize(login_id)
                await keep(rid=auth.request_id)
            body = await client.fetch(
                endpoint, login_id, request_id=state["rid"], raw=True, poll_timeout=part
            )
        line, ok = ok_line(login_id, name, body), True
    except (PollTimeoutError, TimeoutError) as exc:
        if time.time() - state["started"] < config.poll_timeout - 0.001:
            await keep()
            raise arq.worker.Retry(defer=0) from None  # the next slice, same session
        error = (
            exc
            if isinstance(exc, FlinksError)
            else PollTimeoutError(
                "still pending", attempts=0, elapsed=0.0, login_id=login_id, endpoint=name
            )
        )
        line, ok = error_line(login_id, name, error), False
    except SetupError as exc:  # the key or the URL is wrong, not this login: no line
        stop = ctx.get("stop_for_setup")
        if stop is not None:
            stop(exc)  # `flinks-async worker` stops, exit 2; its jobs go back on the queue
        else:  # arq's own worker: wait for someone to fix the set-up
            log.error("worker %s: %s", ctx.get("id"), exc)
        raise arq.worker.Retry(defer=0 if stop is not None else 60) from None
    except Exception as exc:
        doubt = client._transport.setup_in_doubt(exc)  # the key, or this login? later
        if (_transient(exc) or doubt) and state["tries"] + 1 < config.tries:
            tries = state["tries"] + 1
            with contextlib.suppress(Exception):
                await keep(tries=tries)
            delay = min(300.0, config.backoff * 2 ** (tries - 1)) * random.uniform(0.5, 1)
            log.info("login %s: %s; again in %.1fs", key[:8], type(exc).__name__, delay)
            raise arq.worker.Retry(defer=delay) from None
        if not isinstance(exc, FlinksError):
            exc = FlinksError(f"unexpected {type(exc).__name__}: {exc}", login_id=login_id)
        line, ok = error_line(login_id, name, exc), False
    finally:
        stats["in_flight"] -= 1
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(_key(job, "results"), key, line)
        pipe.pexpire(_key(job, "results"), ttl_ms)
        pipe.hdel(_key(job, "state"), key)
        await pipe.execute()
    stats["done" if ok else "failed"] += 1
    return ok


def _endpoint_name(endpoint: str) -> str:
    from ._polling import ENDPOINTS

    spec = ENDPOINTS.get(endpoint)
    return spec.name if spec is not None else endpoint


async def _startup(ctx: dict[str, Any]) -> None:
    config = _Config()
    ctx["config"] = config
    ctx["stats"] = {"done": 0, "failed": 0, "in_flight": 0}
    client = FlinksClient(
        poll_interval=_env_float("FLINKS_POLL_INTERVAL", 10),
        poll_timeout=config.poll_timeout,
        rate_limit=_env_float("FLINKS_RATE_LIMIT", 0) or None,
    )
    redis_url = client.settings.redis_url
    if redis_url:  # refuse jobs rather than fail every one of them
        import redis.asyncio as aioredis

        probe = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            await probe.ping()
        except (OSError, redis_errors()) as exc:
            await client.aclose()
            raise CoordinationError(
                f"the coordination Redis (FLINKS_REDIS_URL) at {shown_redis_url(redis_url)} is "
                f"unreachable ({type(exc).__name__}): this worker takes no job"
            ) from None
        finally:
            await probe.aclose()
    ctx["flinks"] = client
    ctx["id"] = ctx.get("id") or secrets.token_hex(4)
    ctx["progress"] = asyncio.get_running_loop().create_task(_progress(ctx))
    _announce(ctx["id"], redis_url)


async def _progress(ctx: dict[str, Any]) -> None:
    """Say that this worker is alive: a line and a heartbeat key every few seconds."""
    config: _Config = ctx["config"]
    stats = ctx["stats"]
    while True:
        await asyncio.sleep(config.progress_every)
        log.warning(
            "worker %s: %d done, %d failed, %d in flight",
            ctx["id"],
            stats["done"],
            stats["failed"],
            stats["in_flight"],
        )
        with contextlib.suppress(Exception):
            await ctx["redis"].set(
                f"{_WORKERS}{ctx['id']}",
                msgspec.json.encode(stats),
                px=int(config.progress_every * 3000),
            )


async def _shutdown(ctx: dict[str, Any]) -> None:
    progress = ctx.pop("progress", None)
    if progress is not None:
        progress.cancel()
    with contextlib.suppress(Exception):
        await ctx["redis"].delete(f"{_WORKERS}{ctx['id']}")
    client = ctx.pop("flinks", None)
    if client is not None:
        await client.aclose()


def _job_timeout() -> float:
    """arq's job timeout: ``max(2 * slice, slice + 5)`` seconds (40 by default)."""
    part = _env_float("FLINKS_JOB_SLICE", 20)
    return max(2 * part, part + 5)


class WorkerSettings:
    """arq settings of a flinks-async worker (``arq flinks_async.queue.WorkerSettings``
    runs it with arq's own command line; ``flinks-async worker`` adds reconnection)."""

    functions = [pull_login]  # noqa: RUF012 - arq reads these class attributes
    queue_name = QUEUE
    on_startup = _startup
    on_shutdown = _shutdown
    max_jobs = int(os.environ.get("FLINKS_WORKER_CONCURRENCY", "50"))
    job_timeout = _job_timeout()
    max_tries = 100_000  # slices and transient retries are counted by pull_login itself
    keep_result = 0  # nothing about a login stays in arq once its job ends
    poll_delay = 0.1
    redis_settings: Any = None  # set from the URL by `flinks-async worker`


async def run_worker(redis_url: str, *, burst: bool = False) -> None:
    """Run a worker until SIGINT/SIGTERM (or, ``burst``, until the queue is empty).

    Redis going away does not end it: it logs one line, reconnects with backoff (1 s
    doubling to 30 s), logs one line when back. Its logins in progress go back on the
    queue (arq's mark lapses after ``job_timeout + 10`` s) and resume their session.

    A :class:`~flinks_async.SetupError` (the Flinks key, customer id or base URL is
    wrong) stops it: the login that met it and those in progress go back on the queue
    with no result line, and the error is raised (``flinks-async worker`` prints it as
    one line and exits 2)."""
    setup: list[SetupError] = []
    await _run_worker(redis_url, burst, setup)
    if setup:
        raise setup[0]


async def _run_worker(redis_url: str, burst: bool, setup: list[SetupError]) -> None:
    arq = _arq()
    settings = arq.connections.RedisSettings.from_dsn(redis_url)
    settings.conn_retries = 0  # this loop retries, with one line per transition
    shown = shown_redis_url(redis_url)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    worker_id = secrets.token_hex(4)
    current: list[Any] = []

    def stop(signum: int) -> None:
        log.warning("worker %s: %s: stopping", worker_id, signal.Signals(signum).name)
        stopping.set()
        if current:
            current[0].handle_sig(signum)  # cancels its jobs: they go back on the queue

    def stop_for_setup(exc: SetupError) -> None:
        if not setup:
            setup.append(exc)
            stopping.set()
            if current:
                current[0].handle_sig(signal.SIGTERM)  # cancels its jobs: back on the queue

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    delay = 1.0
    ran = False  # this process has taken jobs: losing Redis later is a blip, not an error
    try:
        while True:
            worker = arq.Worker(
                functions=WorkerSettings.functions,
                queue_name=QUEUE,
                redis_settings=settings,
                on_startup=_startup,
                on_shutdown=_shutdown,
                max_jobs=WorkerSettings.max_jobs,
                job_timeout=WorkerSettings.job_timeout,
                max_tries=WorkerSettings.max_tries,
                keep_result=WorkerSettings.keep_result,
                poll_delay=WorkerSettings.poll_delay,
                burst=burst,
                handle_signals=False,
                ctx={"id": worker_id, "stop_for_setup": stop_for_setup},
            )
            current[:] = [worker]
            try:
                await worker.async_run()
                return  # burst: the queue is empty
            except asyncio.CancelledError:
                if stopping.is_set():
                    return
                raise
            except (OSError, redis_errors()) as exc:
                connected = "flinks" in worker.ctx  # this round had got going
                ran = ran or connected
                if not ran:
                    raise CoordinationError(
                        f"the queue's Redis at {shown} is unreachable: {type(exc).__name__}"
                    ) from None
                if connected:  # one line per loss; the next "taking jobs" line is the return
                    delay = 1.0
                    log.warning(
                        "worker %s: lost the queue's Redis at %s (%s): reconnecting with "
                        "backoff (1 s doubling to 30 s); its logins in progress resume later",
                        worker_id,
                        shown,
                        type(exc).__name__,
                    )
            finally:
                current.clear()
                tasks = list(worker.tasks.values())
                for task in tasks:
                    task.cancel()
                if tasks:
                    await asyncio.wait(tasks, timeout=10)
                    for task in tasks:  # retrieved: nothing left to log at exit
                        if task.done() and not task.cancelled():
                            task.exception()
                if "flinks" in worker.ctx:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(_shutdown(worker.ctx), 10)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker.pool.close(close_connection_pool=True), 5)
            if stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            if stopping.is_set():
                return
            delay = min(delay * 2, 30.0)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _announce(worker_id: str, coordination: str | None) -> None:
    log.warning(
        "worker %s: taking jobs from queue %r, %d logins at once, slices of %gs, coordination %s",
        worker_id,
        QUEUE,
        WorkerSettings.max_jobs,
        _env_float("FLINKS_JOB_SLICE", 20),
        f"on ({shown_redis_url(coordination)})" if coordination else "off",
    )
