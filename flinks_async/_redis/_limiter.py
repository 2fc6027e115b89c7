"""The shared rate limit: at most N requests arrive at Flinks in any window, counted over
every process using the same Redis and customer id.

It keeps the promise of the in-process limiter (:mod:`flinks_async._ratelimit`) across
processes, by the same rule: a request occupies a slot from before it is sent until
``window`` after its answer began (or it failed, or was cancelled), and a request starts
only while fewer than N slots are occupied. The slots live in one Redis sorted set,
``flinks-async:{customer_id}:rate-limit`` (member: a random token; score: when the slot
frees, on Redis' clock):

* **take** (one script, atomic): drop the slots whose time has passed; if fewer than N
  remain, add ours at ``now + hold`` (``hold`` = ``window`` + :data:`HOLD_MARGIN`, 3 s);
* **keep**: every :data:`BEAT` (1 s) one script pushes every slot this process still
  holds (sent, no answer yet) to ``now + hold``. A request queued in aiohttp's connection
  pool, or waiting minutes for a slow answer, keeps its slot however long that takes; a
  process killed with -9 stops renewing, and its slots free within ``hold``;
* **give back**: the slot frees ``window`` from now. A take cancelled while its script ran
  is dropped the same way (its request was never sent). Give-backs wait up to
  :data:`GIVE_BACK_DELAY` (5 ms, or a 50th of the window if less) and ride on the next
  take's script (one round trip for both); if no take comes, one script gives back every
  slot released meanwhile. A slot given back late frees late: capacity waits a few
  milliseconds, the limit is never exceeded.

Why not the ``limits`` package (its moving window on Redis): it counts requests as they
*start*. Answers take different times, so starts one second apart can arrive closer
together: the arrival bound needs a slot held until the answer, which a counter of starts
cannot express.

Waiting: within a process, callers queue FIFO, and one task asks Redis for the slots of
the callers at the head of the queue in one script (at most :data:`MAX_BATCH`, 256, and a
quarter of the process's share of the limit, so processes finding slots free at once
split them); those not served ask again after the time Redis says (at most
:data:`MAX_WAIT`, 20 ms, plus up to 5 ms jitter so processes do not ask in step). When the
limit is never reached, a process's callers thus cost one round trip per batch, not one
each.

**Redis unavailable.** ``redis_fallback="error"`` (the default): the call that needed a slot
raises :class:`~flinks_async.CoordinationError`. ``"local"``: the process goes on with
**its share** of the limit, ``N / P`` per window, where P is the number of processes whose
heartbeat it last saw (every process records one in
``flinks-async:{customer_id}:peers`` at each beat; it lapses after :data:`PEER_TTL`, 5 s).
Every beat it asks Redis again; once Redis answers, it records its own recent requests
there (those in flight, and those answered less than a window ago) and goes back to the
shared limit. One WARNING per transition, never one per call.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import random
import secrets
import time
from typing import Any, NamedTuple

from .._errors import CoordinationError
from .._ratelimit import RateLimiter
from . import _scripts
from ._connection import guarded, redis_errors

__all__ = [
    "BEAT",
    "GIVE_BACK_DELAY",
    "HOLD_MARGIN",
    "MAX_BATCH",
    "MAX_WAIT",
    "PEER_TTL",
    "RedisRateLimiter",
    "share_of",
]

log = logging.getLogger("flinks_async")

#: how long a give-back waits for a take to carry it (seconds), at most a 50th of the window
GIVE_BACK_DELAY = 0.005

#: the longest a waiting process sleeps before asking Redis again (seconds)
MAX_WAIT = 0.02
#: at most this many queued callers ask for a slot in one script
MAX_BATCH = 256
#: how often a process renews the slots it holds and its heartbeat (seconds)
BEAT = 1.0
#: a slot's hold beyond the window: how long a dead process's slots outlive it (seconds)
HOLD_MARGIN = 3.0
#: how long a process counts as a peer after its last heartbeat (seconds)
PEER_TTL = 5.0


def share_of(capacity: int, window: float, peers: int) -> tuple[int, float]:
    """``(n, w)``: one process's share of ``capacity`` per ``window`` among ``peers``
    processes: ``floor(capacity / peers)`` per ``window``, or when that is below 1, one
    request per ``window * peers / capacity`` seconds."""
    peers = max(1, peers)
    if capacity >= peers:
        return capacity // peers, window
    return 1, window * peers / capacity


class _Waiter(NamedTuple):
    """A caller queued for a shared slot: the token it asks for, and its answer (the token,
    or ``None`` when the limiter fell back to the local share)."""

    token: str
    future: asyncio.Future[str | None]


class RedisRateLimiter:
    """The shared rate limit (see the module docstring). Same interface as
    :class:`~flinks_async._ratelimit.RateLimiter`: ``await acquire()`` returns a token that
    ``release(token)`` gives back; :meth:`aclose` when done."""

    def __init__(
        self,
        redis: Any,
        *,
        shown_url: str,
        customer_id: str,
        capacity: int,
        window: float,
        fallback: bool,
        beat: float = BEAT,
        hold_margin: float = HOLD_MARGIN,
        peer_ttl: float = PEER_TTL,
    ) -> None:
        self.url = shown_url
        self.key = f"flinks-async:{customer_id}:rate-limit"
        self.peers_key = f"flinks-async:{customer_id}:peers"
        self.capacity = capacity
        self.window = window
        self.hold = window + hold_margin
        self.beat = beat
        self.peer_ttl = peer_ttl
        self.fallback = fallback
        #: processes seen sharing this limit at the last heartbeat (this one included)
        self.peers = 1
        self._id = secrets.token_hex(8)
        self._redis = redis
        self._take = redis.register_script(_scripts.TAKE)
        self._give_back = redis.register_script(_scripts.GIVE_BACK)
        self._keep = redis.register_script(_scripts.KEEP)
        self._seed = redis.register_script(_scripts.SEED)
        self._queue: collections.deque[_Waiter] = collections.deque()  # waiting, in order
        self._taker: asyncio.Task[None] | None = None
        self._held: set[str] = set()  # taken on Redis, no answer yet
        self._returns: list[str] = []  # answered: to give back
        self._drops: list[str] = []  # take cancelled: to drop
        self._flusher: asyncio.Task[None] | None = None
        self._flush_delay = min(GIVE_BACK_DELAY, window / 50)
        self._keeper: asyncio.Task[None] | None = None
        #: this process's share while Redis is away (redis_fallback="local"), else None
        self._local: RateLimiter | None = None
        self._charged: set[str] = set()  # Redis slots counted in the local share too
        #: when this process's recent answers began (monotonic), for the local share
        self._answered: collections.deque[float] = collections.deque()
        self._trouble = False  # a failure was logged; the next success logs recovery
        self._closed = False

    def __repr__(self) -> str:
        mode = "local share" if self._local is not None else "shared"
        return (
            f"RedisRateLimiter({self.url!r}, capacity={self.capacity}, window={self.window}, "
            f"{mode})"
        )

    @property
    def shared(self) -> bool:
        """False while the process runs on its local share (Redis away, fallback on)."""
        return self._local is None

    async def acquire(self, *, priority: bool = False) -> Any:
        """Wait for a slot; return the token to :meth:`release`."""
        if self._keeper is None and not self._closed:
            self._keeper = asyncio.get_running_loop().create_task(self._keep_up())
        while True:
            local = self._local
            if local is not None:
                await local.acquire(priority=priority)
                if self._local is local:
                    return local
                local.release()  # back on Redis while this waited: take a shared slot
                continue
            try:
                token = await self._take_shared(priority)
            except (OSError, TimeoutError, redis_errors()) as exc:
                if not self.fallback:
                    raise CoordinationError(
                        f"Redis at {self.url} is unavailable for the shared rate limit: "
                        f"{type(exc).__name__}"
                    ) from None
                self._go_local(exc)
                continue
            if token is not None:
                return token
            # fell back to the local share while this waited for the lock: take from it

    async def _take_shared(self, priority: bool) -> str | None:
        """A shared slot's token, or None when the limiter fell back meanwhile: queue for
        one, and let the taker ask Redis for every queued caller at once."""
        if self._local is not None:
            return None
        loop = asyncio.get_running_loop()
        waiter = _Waiter(secrets.token_hex(8), loop.create_future())
        if priority:
            self._queue.appendleft(waiter)
        else:
            self._queue.append(waiter)
        if self._taker is None:
            self._taker = loop.create_task(self._take_for_queue())
        try:
            return await waiter.future
        except asyncio.CancelledError:
            fut = waiter.future
            granted = fut.done() and not fut.cancelled() and fut.exception() is None
            if granted and fut.result() is not None:  # granted as this was cancelled:
                self._held.discard(waiter.token)  # nothing was sent, so drop the slot
                self._drops.append(waiter.token)
                self._flush_soon()
            raise

    async def _take_for_queue(self) -> None:
        """While callers queue: one script takes slots for a batch of them
        (:meth:`_next_batch`), carrying the pending give-backs; those left wait for the time
        Redis says, then ask again."""
        queue = self._queue
        try:
            while queue:
                if self._local is not None:  # fell back: the queued callers go local
                    return
                batch = self._next_batch()
                if not batch:
                    return
                answer = await self._ask(batch)
                if answer is None:
                    return  # Redis failed: every caller queued has the error
                granted, wait = answer
                self._grant(batch[:granted])
                if granted < len(batch):
                    delay = min(max(wait, 1) / 1000, MAX_WAIT)
                    await asyncio.sleep(delay + random.uniform(0, 0.005))
        finally:
            self._taker = None
            for waiter in queue:  # closing, fallen back, or a failure: nobody waits forever
                if not waiter.future.done():
                    waiter.future.set_result(None)
            queue.clear()

    def _next_batch(self) -> list[_Waiter]:
        """The callers to ask for, first come first served (a minted token's call goes
        first): up to :data:`MAX_BATCH` of them, and at most a quarter of this process's
        share (``capacity // (4 * peers)``, at least 1), so that processes finding slots
        free at the same moment split them, none taking the whole window's worth. Drops
        the callers cancelled while queued (never asked for)."""
        most = min(MAX_BATCH, max(1, self.capacity // (4 * self.peers)))
        batch: list[_Waiter] = []
        for waiter in list(self._queue):
            if waiter.future.done():
                self._queue.remove(waiter)
            elif len(batch) < most:
                batch.append(waiter)
        return batch

    async def _ask(self, batch: list[_Waiter]) -> tuple[int, int] | None:
        """Run the take script for ``batch``, carrying the pending give-backs and drops:
        how many it granted (the first ones) and how long the rest should wait (ms). None
        when Redis failed: every queued caller then has the error."""
        gives, self._returns = self._returns, []
        drops, self._drops = self._drops, []
        tokens = [w.token for w in batch]
        hold, window = int(self.hold * 1000), int(self.window * 1000)
        args = [self.capacity, hold, window, len(gives), len(drops), *gives, *drops, *tokens]
        try:
            granted, wait = await guarded(self._take(keys=[self.key], args=args))
        except BaseException as exc:
            # what the take carried is given back again (later than needed, never early);
            # cancelled (closing), the script may have run: drop the slots asked for
            # rather than hold them for `hold`
            self._returns += gives
            self._drops += drops
            if isinstance(exc, asyncio.CancelledError):
                self._drops += tokens
                self._flush_soon()
                raise
            for waiter in self._queue:  # they would all meet the same failure
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
            self._queue.clear()
            return None
        return int(granted), int(wait)

    def _grant(self, granted: list[_Waiter]) -> None:
        """Hand their tokens to the callers Redis granted a slot (or drop the slot of one
        cancelled while Redis answered)."""
        for waiter in granted:
            self._queue.remove(waiter)
            if waiter.future.done():
                self._drops.append(waiter.token)
                self._flush_soon()
            else:
                self._held.add(waiter.token)
                waiter.future.set_result(waiter.token)

    def release(self, token: Any) -> None:
        """Give a slot back: it frees ``window`` seconds from now (Redis' clock)."""
        if isinstance(token, RateLimiter):  # taken from a local share
            token.release()
            return
        if token is None:
            return
        self._held.discard(token)
        answered = self._answered
        now = time.monotonic()
        answered.append(now)
        while answered[0] <= now - self.window:
            answered.popleft()
        if token in self._charged:
            self._charged.discard(token)
            if self._local is not None:
                self._local.release()
        self._returns.append(token)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flusher is None and not self._closed:
            self._flusher = asyncio.get_running_loop().create_task(self._flush(self._flush_delay))

    async def _flush(self, delay: float = 0.0) -> None:
        """Give back (and drop) every slot released meanwhile and not carried by a take
        within ``delay``, one script per round trip."""
        try:
            if delay:
                await asyncio.sleep(delay)
            while self._returns or self._drops:
                gives, self._returns = self._returns, []
                drops, self._drops = self._drops, []
                try:
                    await guarded(
                        self._give_back(
                            keys=[self.key],
                            args=[int(self.window * 1000), len(gives), *gives, *drops],
                        )
                    )
                except (OSError, TimeoutError, redis_errors()) as exc:
                    # the slots free by themselves after `hold`: only capacity is lost
                    if self.fallback:
                        self._go_local(exc)
                    else:
                        self._note_trouble(exc, "could not give slots back")
        finally:
            self._flusher = None

    async def _keep_up(self) -> None:
        """Every beat: renew the held slots and the heartbeat, or (local) ask Redis again."""
        while not self._closed:
            await asyncio.sleep(self.beat * random.uniform(0.9, 1.0))
            held = list(self._held) if self._local is None else []
            try:
                peers = await guarded(
                    self._keep(
                        keys=[self.key, self.peers_key],
                        args=[
                            int(self.hold * 1000),
                            self._id,
                            int(self.peer_ttl * 1000),
                            *held,
                        ],
                    )
                )
            except (OSError, TimeoutError, redis_errors()) as exc:
                if self.fallback and self._local is None:
                    self._go_local(exc)
                elif self._local is None:
                    self._note_trouble(exc, "could not renew the slots in flight")
                continue
            self.peers = max(1, int(peers))
            if self._local is not None:
                await self._go_shared()
            elif self._trouble:
                self._trouble = False
                log.warning("rate limit: Redis at %s answers again", self.url)

    def _note_trouble(self, exc: BaseException, what: str) -> None:
        if not self._trouble:
            self._trouble = True
            log.warning("rate limit: %s to Redis at %s: %s", what, self.url, type(exc).__name__)

    def _go_local(self, exc: BaseException) -> None:
        """Redis is away (fallback on): from now on, this process's share of the limit."""
        if self._local is not None:
            return
        capacity, window = share_of(self.capacity, self.window, self.peers)
        local = RateLimiter(capacity, window)
        # the share counts this process's requests on the wire and those answered less
        # than a window ago, as if they had been sent under it
        self._charged = set(self._held)
        local.in_flight = len(self._charged)
        horizon = time.monotonic() - self.window
        local.answered.extend(t for t in self._answered if t > horizon)
        self._local = local
        self._trouble = True
        log.warning(
            "rate limit: Redis at %s is unavailable (%s): this process now sends at most %d "
            "requests per %gs, its share of %d among the %d process(es) it last saw, until "
            "Redis answers again (redis_fallback='local')",
            self.url,
            type(exc).__name__,
            capacity,
            window,
            self.capacity,
            self.peers,
        )

    async def _go_shared(self) -> None:
        """Redis answers again: record this process's recent requests there, then share."""
        local = self._local
        assert local is not None
        now = time.monotonic()
        pairs: list[object] = []
        for _ in range(local.in_flight):
            pairs += [int(self.hold * 1000), f"seed-{secrets.token_hex(8)}"]
        for answered in list(local.answered):
            left = answered + local.window - now
            if left > 0:
                pairs += [math.ceil(left * 1000), f"seed-{secrets.token_hex(8)}"]
        try:
            if pairs:
                await guarded(self._seed(keys=[self.key], args=[int(self.hold * 1000), *pairs]))
        except (OSError, TimeoutError, redis_errors()):
            return  # not yet: stay local, try again next beat
        self._local = None
        self._charged = set()
        self._trouble = False
        local.abandon()  # wake its waiters: they take shared slots now
        log.warning(
            "rate limit: Redis at %s answers again: back to the shared limit of %d per %gs",
            self.url,
            self.capacity,
            self.window,
        )

    async def aclose(self) -> None:
        """Stop renewing, give back what is pending (2 s at most), leave the peers."""
        self._closed = True
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.wait([self._keeper], timeout=self.beat + 2)
        if (self._returns or self._drops) and self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        if self._flusher is not None:
            await asyncio.wait([self._flusher], timeout=2)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await guarded(self._redis.zrem(self.peers_key, self._id))
