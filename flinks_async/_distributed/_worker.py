"""The worker's side of a distributed pull: :func:`pull_login` (one slice of one login),
the worker's start-up, progress lines and shut-down, :class:`WorkerSettings` for arq's own
command line, and :func:`run_worker` (rules in :mod:`flinks_async._distributed`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import random
import secrets
import signal
import time
from typing import Any, NoReturn

import msgspec

from .._client import FlinksClient, setup_in_doubt
from .._endpoints import endpoint_named
from .._errors import (
    ClientClosedError,
    CoordinationError,
    DecodeError,
    FlinksError,
    PollTimeoutError,
    SetupError,
    TransientAPIError,
    TransportError,
)
from .._files._jsonl import error_line, ok_line
from .._redact import shown_redis_url
from .._redis._connection import redis_errors
from ._jobs import QUEUE, WORKERS, arq_module, job_key

__all__ = ["WorkerSettings", "pull_login", "run_worker"]

log = logging.getLogger("flinks_async")


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
    heartbeat: float = dataclasses.field(
        default_factory=lambda: _env_float("FLINKS_WORKER_HEARTBEAT", 1)
    )


def _transient(exc: BaseException) -> bool:
    """Whether retrying later may change the outcome (see the module docstring)."""
    if isinstance(exc, DecodeError):
        return exc.retryable
    return isinstance(
        exc, CoordinationError | TransportError | TransientAPIError | ClientClosedError
    ) or not isinstance(exc, FlinksError)


@dataclasses.dataclass(slots=True)
class _Slice:
    """One run of :func:`pull_login`: one slice of one login, and what ends it."""

    ctx: dict[str, Any]
    job: str
    key: str
    name: str  # the endpoint's Flinks name, for the lines
    login_id: str
    ttl_ms: int
    state: dict[str, Any]  # kept in Redis across slices: started, tries, rid

    @classmethod
    async def load(cls, ctx: dict[str, Any], job: str, endpoint: str, key: str) -> _Slice | None:
        """The login and its state; None when there is nothing to pull."""
        async with ctx["redis"].pipeline(transaction=False) as pipe:  # one round trip
            pipe.hget(job_key(job, "ids"), key)
            pipe.hget(job_key(job, "meta"), "ttl")
            pipe.hget(job_key(job, "state"), key)
            pipe.hexists(job_key(job, "results"), key)
            login, ttl, raw_state, ended = await pipe.execute()
        if login is None or ttl is None or ended:
            return None
        state: dict[str, Any] = msgspec.json.decode(raw_state) if raw_state else {}
        state.setdefault("started", time.time())
        state.setdefault("tries", 0)
        name = _endpoint_name(endpoint)
        return cls(ctx, job, key, name, login.decode(), int(float(ttl) * 1000), state)

    async def keep(self, **changes: Any) -> bool:
        """Store the login's state; False when the job is gone (purged)."""
        self.state.update(changes)
        value = msgspec.json.encode(self.state)
        return await _write(self.ctx["redis"], self.job, "state", self.key, value, self.ttl_ms)

    async def pull(self, endpoint: str) -> bytes | None:
        """The answer, within this slice; None when the job was purged meanwhile."""
        config: _Config = self.ctx["config"]
        client: FlinksClient = self.ctx["flinks"]
        left = config.poll_timeout - (time.time() - self.state["started"])
        if left <= 0:
            raise PollTimeoutError(
                f"still pending after {config.poll_timeout:.0f}s (FLINKS_POLL_TIMEOUT)",
                attempts=0,
                elapsed=time.time() - self.state["started"],
                login_id=self.login_id,
                request_id=self.state.get("rid"),
                endpoint=self.name,
            )
        part = min(config.slice, left)
        async with asyncio.timeout(_job_timeout() - 1):  # within arq's own job timeout
            if not self.state.get("rid"):  # the first slice: its start counts for poll_timeout
                auth = await client.authorize(self.login_id)
                if not await self.keep(rid=auth.request_id):
                    return None
            rid = self.state["rid"]
            done = self.state.get("steps", 0)  # a chain's first calls (Enrich: the detail)
            for step in endpoint_named(endpoint).after[done:]:
                await client.fetch(
                    step.cli_name, self.login_id, request_id=rid, raw=True, poll_timeout=part
                )
                if not await self.keep(steps=done + 1):
                    return None
                done += 1
            body: bytes = await client.fetch(
                endpoint, self.login_id, request_id=rid, raw=True, poll_timeout=part
            )
        return body

    async def pending(self, exc: BaseException) -> bytes | None:
        """Still pending: the next slice (arq's Retry), or its line once poll_timeout
        is spent; None when the job was purged."""
        if time.time() - self.state["started"] < self.ctx["config"].poll_timeout - 0.001:
            if not await self.keep():
                return None  # purged: arq drops its records of the login
            raise arq_module().worker.Retry(defer=0) from None  # the next slice, same session
        error = (
            exc
            if isinstance(exc, FlinksError)
            else PollTimeoutError(
                "still pending", attempts=0, elapsed=0.0, login_id=self.login_id, endpoint=self.name
            )
        )
        return error_line(self.login_id, self.name, error)

    def setup_failed(self, exc: SetupError) -> NoReturn:
        """The key or the URL is wrong, not this login: no line, the job goes back."""
        stop = self.ctx.get("stop_for_setup")
        if stop is not None:
            stop(exc)  # `flinks-async worker` stops, exit 2; its jobs go back on the queue
        else:  # arq's own worker: wait for someone to fix the set-up
            log.error("worker %s: %s", self.ctx.get("id"), exc)
        raise arq_module().worker.Retry(defer=0 if stop is not None else 60) from None

    async def failed(self, exc: Exception) -> bytes | None:
        """Tried again later (arq's Retry) while it may pass, else its line; None when the
        job was purged."""
        config: _Config = self.ctx["config"]
        doubt = setup_in_doubt(self.ctx["flinks"], exc)  # the key, or this login? later
        if (_transient(exc) or doubt) and self.state["tries"] + 1 < config.tries:
            tries = self.state["tries"] + 1
            with contextlib.suppress(Exception):
                if not await self.keep(tries=tries):
                    return None
            delay = min(300.0, config.backoff * 2 ** (tries - 1)) * random.uniform(0.5, 1)
            log.info("login %s: %s; again in %.1fs", self.key[:8], type(exc).__name__, delay)
            raise arq_module().worker.Retry(defer=delay) from None
        if not isinstance(exc, FlinksError):
            exc = FlinksError(f"unexpected {type(exc).__name__}: {exc}", login_id=self.login_id)
        return error_line(self.login_id, self.name, exc)


async def pull_login(ctx: dict[str, Any], job: str, endpoint: str, key: str) -> bool | None:
    """The arq job: one slice of one login (see the module docstring). True when it ended
    ok, False when it ended failed, None when it went back on the queue (or was purged)."""
    run = await _Slice.load(ctx, job, endpoint, key)
    if run is None:
        return None  # purged or expired, or its line is written: nothing to pull
    stats: dict[str, int] = ctx["stats"]
    held: collections.Counter[str] = ctx["held"]
    stats["in_flight"] += 1
    held[job] += 1
    line: bytes | None
    try:
        body = await run.pull(endpoint)
        if body is None:
            return None  # purged meanwhile: drop it
        line, ok = ok_line(run.login_id, run.name, body), True
    except (PollTimeoutError, TimeoutError) as exc:
        line, ok = await run.pending(exc), False
    except SetupError as exc:
        run.setup_failed(exc)
    except Exception as exc:
        line, ok = await run.failed(exc), False
    finally:
        stats["in_flight"] -= 1
        held[job] -= 1
        if held[job] <= 0:
            del held[job]
    if line is None or not await _write(ctx["redis"], job, "results", key, line, run.ttl_ms):
        return None  # purged while it was pulled: its line goes nowhere
    stats["done" if ok else "failed"] += 1
    return ok


# Writes a login's state or line only while its job exists: a purged job stays purged
# whatever its workers were doing. KEYS: meta, the hash to write, state; ARGV: field,
# value, ttl in ms. The line of a login ends its state.
_WRITE = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
redis.call('hset', KEYS[2], ARGV[1], ARGV[2])
redis.call('pexpire', KEYS[2], ARGV[3])
if KEYS[2] ~= KEYS[3] then redis.call('hdel', KEYS[3], ARGV[1]) end
return 1
"""


async def _write(redis: Any, job: str, part: str, key: str, value: bytes, ttl_ms: int) -> bool:
    keys = (job_key(job, "meta"), job_key(job, part), job_key(job, "state"))
    return bool(await redis.eval(_WRITE, 3, *keys, key, value, ttl_ms))


def _endpoint_name(endpoint: str) -> str:
    from .._endpoints import ENDPOINTS

    spec = ENDPOINTS.get(endpoint)
    return spec.name if spec is not None else endpoint


async def _startup(ctx: dict[str, Any]) -> None:
    config = _Config()
    ctx["config"] = config
    # kept across reconnections: `flinks-async worker` hands the same ones to every round
    ctx.setdefault("stats", {"done": 0, "failed": 0, "in_flight": 0})
    ctx.setdefault("held", collections.Counter())
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
    with contextlib.suppress(Exception):  # alive from the start, not after the first beat
        await _beat(ctx)
    ctx["progress"] = asyncio.get_running_loop().create_task(_progress(ctx))
    _announce(ctx["id"], redis_url)


def heartbeat_ttl(interval: float) -> float:
    """How long a worker's heartbeat outlives its last beat: 5 beats (5 s by default)."""
    return 5 * interval


async def _beat(ctx: dict[str, Any]) -> None:
    """This worker's heartbeat: its capacity and the logins it holds, by job, read by
    ``status``; gone :func:`heartbeat_ttl` after the last beat of a killed worker."""
    config: _Config = ctx["config"]
    beat = {
        **ctx["stats"],
        "concurrency": WorkerSettings.max_jobs,
        "jobs": dict(ctx["held"]),
    }
    await ctx["redis"].set(
        f"{WORKERS}{ctx['id']}",
        msgspec.json.encode(beat),
        px=max(1, int(heartbeat_ttl(config.heartbeat) * 1000)),
    )


async def _progress(ctx: dict[str, Any]) -> None:
    """Say that this worker is alive: a heartbeat every ``FLINKS_WORKER_HEARTBEAT`` s,
    a line every ``FLINKS_WORKER_PROGRESS`` s."""
    config: _Config = ctx["config"]
    last_line = time.monotonic()
    while True:
        await asyncio.sleep(config.heartbeat)
        with contextlib.suppress(Exception):
            await _beat(ctx)
        if time.monotonic() - last_line >= config.progress_every:
            last_line = time.monotonic()
            _log_counts(ctx["id"], ctx["stats"], "")


def _log_counts(worker_id: str, stats: dict[str, int], when: str) -> None:
    log.warning(
        "worker %s: %s%d done, %d failed, %d in flight",
        worker_id,
        when,
        stats["done"],
        stats["failed"],
        stats["in_flight"],
    )


async def _shutdown(ctx: dict[str, Any]) -> None:
    progress = ctx.pop("progress", None)
    if progress is not None:
        progress.cancel()
    with contextlib.suppress(Exception):
        await ctx["redis"].delete(f"{WORKERS}{ctx['id']}")
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
    allow_abort_jobs = True  # `purge` stops a job's logins in progress at once
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


class _Process:
    """A ``flinks-async worker`` process across its rounds (an arq worker each, a new one
    after each loss of Redis): its id, its counts, and how it stops."""

    def __init__(self, setup: list[SetupError]) -> None:
        self.id = secrets.token_hex(4)
        self.setup = setup
        self.stopping = asyncio.Event()
        self.current: Any = None  # this round's arq worker
        self.stats = {"done": 0, "failed": 0, "in_flight": 0}
        self.held: collections.Counter[str] = collections.Counter()

    def stop(self, signum: int) -> None:
        log.warning("worker %s: %s: stopping", self.id, signal.Signals(signum).name)
        self.stopping.set()
        if self.current is not None:
            self.current.handle_sig(signum)  # cancels its jobs: they go back on the queue

    def stop_for_setup(self, exc: SetupError) -> None:
        if not self.setup:
            self.setup.append(exc)
            self.stopping.set()
            if self.current is not None:
                self.current.handle_sig(signal.SIGTERM)  # cancels its jobs: back on the queue

    def round(self, settings: Any, burst: bool) -> Any:
        """This round's arq worker: :class:`WorkerSettings`, and this process's state."""
        same = "functions queue_name on_startup on_shutdown max_jobs job_timeout max_tries"
        same += " keep_result poll_delay allow_abort_jobs"
        ctx = {"id": self.id, "stop_for_setup": self.stop_for_setup}
        self.current = arq_module().Worker(
            **{name: getattr(WorkerSettings, name) for name in same.split()},
            redis_settings=settings,
            burst=burst,
            handle_signals=False,
            ctx=ctx | {"stats": self.stats, "held": self.held},
        )
        return self.current

    async def stopped_within(self, delay: float) -> bool:
        """Whether it is stopping, waiting up to ``delay`` seconds for it."""
        if not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
        return self.stopping.is_set()


async def _end_round(worker: Any) -> bool:
    """Cancel a round's jobs (back on the queue), shut it down: had it got going?"""
    tasks = list(worker.tasks.values())
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:  # retrieved: nothing left to log at exit
            if task.done() and not task.cancelled():
                task.exception()
    started = "flinks" in worker.ctx
    if started:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(_shutdown(worker.ctx), 10)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(worker.pool.close(close_connection_pool=True), 5)
    return started


async def _run_worker(redis_url: str, burst: bool, setup: list[SetupError]) -> None:
    settings = arq_module().connections.RedisSettings.from_dsn(redis_url)
    settings.conn_retries = 0  # this loop retries, with one line per transition
    shown = shown_redis_url(redis_url)
    process = _Process(setup)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, process.stop, sig)
    delay = 1.0
    ran = False  # this process has taken jobs: losing Redis later is a blip, not an error
    try:
        while True:
            worker = process.round(settings, burst)
            try:
                await worker.async_run()
                return  # burst: the queue is empty
            except asyncio.CancelledError:
                if process.stopping.is_set():
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
                        process.id,
                        shown,
                        type(exc).__name__,
                    )
            finally:
                process.current = None
                ran = await _end_round(worker) or ran
            if await process.stopped_within(delay):
                return
            delay = min(delay * 2, 30.0)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if ran:  # its counts over its whole life, reconnections included
            _log_counts(process.id, process.stats, "stopped: ")


def _announce(worker_id: str, coordination: str | None) -> None:
    log.warning(
        "worker %s: taking jobs from queue %r, %d logins at once, slices of %gs, coordination %s",
        worker_id,
        QUEUE,
        WorkerSettings.max_jobs,
        _env_float("FLINKS_JOB_SLICE", 20),
        f"on ({shown_redis_url(coordination)})" if coordination else "off",
    )
