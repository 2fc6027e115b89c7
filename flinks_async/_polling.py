"""The 202 polling rule: ask, and while the answer is 202, wait and ask again.

For one data call (``run_plan``):

1. Authorize, unless a ``request_id`` was given.
2. Send the endpoint's request (``POST /Investments``, ``POST /GetAccountsDetail``...).
3. While the answer is ``202`` (``OPERATION_PENDING`` / ``OPERATION_DISPATCHED``), sleep
   ``poll_interval * uniform(1 - poll_jitter, 1 + poll_jitter)`` seconds (default 10 s
   +-10%, so thousands of pollers do not synchronise) and poll: ``/Investments`` by
   re-POSTing the same request, the banking endpoints by ``GET {Endpoint}Async/{requestId}``.
   With webhooks on (``Plan.webhooks``, a hub), the call waits on the hub for the webhook
   carrying its ``RequestId`` instead of sleeping, and returns its body decoded the same
   way as a polled 200 (the same value, the same errors) as soon as it comes; the wait
   lasts ``webhook_poll_interval`` (+-``poll_jitter``) while the call is younger than
   ``webhook_grace``, ``poll_interval`` after, and each wait that ends empty is followed
   by one poll (the safety net: a webhook lost or never sent costs time, never the data).
4. On ``SESSION_NONEXISTENT``/``SESSION_EXPIRED`` authorize once more and go back to 2;
   a second session error is raised.
5. The whole call (Authorize included) is bounded by ``poll_timeout`` (default 1800 s,
   Flinks' 30 minutes): past it, :class:`PollTimeoutError`. Each HTTP request inside is
   retried on its own budget (``max_retries``).

A row with ``after`` (Enrich's attributes and categorization: ``after`` is
``GetAccountsDetail``) is a chain: in a session it opened, step 2 first runs ``after``'s
calls by the same rule (its 202s polled, or with webhooks on its webhook awaited) until its
200, then sends the row's own request with the same RequestId. A session error anywhere in
the chain starts it again from Authorize, once (Flinks' 8-minute window after a cached
detail). A call given a ``request_id`` trusts that session's detail to be done or running
(the attributes answer 202 until it is) and starts the chain only after a session error.

Cancelling the caller stops everything at once: the sleep or the HTTP exchange in
progress is cancelled and its connection released.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ._config import Settings
from ._deadlines import Deadlines
from ._decoding import Decoder, ModelDecoder, decode_answer
from ._endpoints import ENDPOINTS, endpoint_named, endpoint_urls, fill, wire_options
from ._endpoints import AnyEndpoint as Endpoint  # a row of the table, whatever its types
from ._errors import PollTimeoutError, SessionExpiredError
from ._events import Event, scoped_hooks
from ._models import Authorization
from ._transport import Request, Sender

if TYPE_CHECKING:
    from ._webhooks import WebhookHub

__all__ = [
    "ENDPOINTS",  # the table's, re-exported: it lives in flinks_async._endpoints
    "Endpoint",
    "Plan",
    "endpoint_named",
    "endpoint_urls",
    "run_plan",
    "wire_options",
]


@dataclasses.dataclass(slots=True, eq=False)
class Plan:
    """One data call, as the client planned it, and how far it got.

    Built once by the client for each call and handed down: :func:`run_plan` runs it, the
    single-flight table shares it (a run handed over to another task carries on from the
    same plan instead of starting again: same session, no second first request once it was
    answered, and no deadline of its own: each caller waiting on it keeps its own), and
    events, spans and errors read the login from it. It is also the call's single-flight
    :class:`~flinks_async._singleflight.Caller`: its clock starts when the call is first
    awaited, and it gives up at ``poll_timeout`` from then, whoever polls.
    """

    endpoint: Endpoint
    login_id: str
    #: the session to use: the caller's ``request_id``, else the one Authorize opened
    request_id: str | None
    #: the endpoint's request options, as sent (wire names, ``None``s left out)
    body: dict[str, Any]
    #: the call's options (the client's, or a view's): ``poll_timeout`` and the retries
    settings: Settings
    #: turns the 200 body into the value returned (typed and checked, or the bytes)
    decode: Decoder
    url: str
    headers: dict[str, str]
    #: sends each request (the client's :class:`~flinks_async._transport.Transport`; a
    #: fake in unit tests): a request, its answer
    transport: Sender
    #: ``POST /Authorize`` for a login
    authorize: Callable[[str], Awaitable[Authorization]]
    started: float | None = None  #: ``time.monotonic()`` of the first attempt
    posted: bool = False  #: the endpoint's first request was answered: poll from now on
    polls: int = 0  #: 202 answers so far
    #: where webhooks are awaited between polls (``FlinksClient(webhooks=True)``), or None
    webhooks: WebhookHub | None = None
    #: False once the run goes on for other callers past this call's deadline (handed
    #: over by single-flight): it then runs until its last caller leaves
    bounded: bool = True
    #: the plan whose run this call waits on (a single-flight follower), else None
    followed: Plan | None = None
    polls_seen: int = 0  #: the followed run's polls when this call began to wait
    #: ``endpoint.after`` (the detail an Enrich row needs) has finished in this session
    prepared: bool = False
    #: the client's deadline queue (one timer for many calls), else ``asyncio.timeout``
    deadlines: Deadlines | None = None

    @property
    def deadline(self) -> float:
        """When the call gives up: ``started + poll_timeout`` (monotonic clock)."""
        return (self.started or time.monotonic()) + self.settings.poll_timeout

    # --- a single-flight Caller (flinks_async._singleflight): each call's own deadline

    def begin(self) -> float:
        """Start the call's clock (once); return its deadline."""
        if self.started is None:
            self.started = time.monotonic()
        return self.started + self.settings.poll_timeout  # self.deadline

    def follow(self, run: Plan | None) -> None:
        """This call waits on ``run``'s polling instead of its own."""
        self.followed = run
        self.polls_seen = run.polls if run is not None else 0

    def late(self) -> PollTimeoutError:
        """This call's :class:`PollTimeoutError`, at its own deadline, while the run it
        waits on goes on: its own time, and the polls made while it waited."""
        run = self.followed
        elapsed = time.monotonic() - (self.started or 0.0)
        polls = (run.polls - self.polls_seen) if run is not None else 0
        return PollTimeoutError(
            f"still pending after {elapsed:.1f}s and {polls} polls, waiting on the run of "
            f"an earlier call for this login (poll_timeout={self.settings.poll_timeout}s)",
            attempts=polls,
            elapsed=elapsed,
            login_id=self.login_id,
            request_id=run.request_id if run is not None else None,
            endpoint=self.endpoint.name,
        )

    def expired(self, exc: BaseException) -> bool:
        """Whether the run ended at this call's own deadline (nobody else's)."""
        return self.bounded and isinstance(exc, PollTimeoutError)

    def unbound(self) -> None:
        """The run goes on for other callers: no deadline of its own from now on."""
        self.bounded = False


def _body(plan: Plan, rid: str) -> bytes | None:
    """The first request's body: none for a ``GET``; the options as they are when the
    route carries the RequestId in its path; else the options with ``RequestId`` (for
    ``/Investments``, re-sent as its poll: ``LoginId``, ``RequestId``, ``MostRecentCached``)."""
    endpoint, route = plan.endpoint, plan.endpoint.route
    if route.method == "GET":
        return None
    if "requestId" in route.params:
        return msgspec.json.encode(plan.body)
    if endpoint.poll_by_get:
        return msgspec.json.encode({**plan.body, "RequestId": rid})
    return msgspec.json.encode(
        {"LoginId": plan.login_id, "RequestId": rid, "MostRecentCached": True}
    )


def _calls(plan: Plan, rid: str) -> tuple[Request, Request]:
    """The first request of a session and the poll that repeats it (built once, reused),
    from the row's ``route`` and ``poll`` (:class:`~flinks_async._endpoints.Route`), with
    ``{loginId}`` and ``{requestId}`` filled in."""
    endpoint, login_id, s = plan.endpoint, plan.login_id, plan.settings
    route, polled = endpoint.route, endpoint.poll
    first = Request(
        route.method,
        fill(plan.url, login_id=login_id, request_id=rid),
        endpoint.name,
        plan.headers,
        _body(plan, rid),
        login_id,
        rid,
        plan.decode,
        settings=s,
    )
    if polled is None:  # RESEND: polled by sending the same request again
        return first, first
    poll = Request(
        polled.method,
        polled.url(polled.base(s), login_id=login_id, request_id=rid),
        polled.head,
        plan.headers,
        None,
        login_id,
        rid,
        plan.decode,
        settings=s,
    )
    return first, poll


async def _pushed(plan: Plan, rid: str, body: bytes) -> Any:
    """A webhook's body for ``plan``, decoded as its polled 200 would be (holding its
    size of the client's body budget while it is decoded, as a polled body does)."""
    transport = plan.transport
    budget = transport.budget
    await budget.take(len(body))
    try:
        value = await decode_answer(
            plan.decode, body, login_id=plan.login_id, endpoint=plan.endpoint.name, request_id=rid
        )
    finally:
        budget.give(len(body))
    if transport.hooks or scoped_hooks.get():
        elapsed = time.monotonic() - (plan.started or 0.0)
        name, login_id = plan.endpoint.name, plan.login_id
        transport.emit(Event("webhook", name, login_id, rid, plan.polls, 200, elapsed=elapsed))
    return value


async def run_plan(plan: Plan) -> Any:
    """Run the polling rule for one planned call (see the module docstring); return the
    200 value. Updates ``plan`` as it goes, so that a second run of the same plan carries on.
    """
    p = plan
    if p.started is None:
        p.started = time.monotonic()
    deadlines, duration = p.deadlines, p.settings.poll_timeout
    # the client's deadline queue (one timer for its calls), else asyncio.timeout
    entry = deadlines.enter(duration, p.started) if deadlines is not None and p.bounded else None
    if entry is None or deadlines is None:
        return await _run_timed(p)
    try:
        result = await _poll(p)
    except BaseException as exc:
        deadlines.leave(duration, entry)  # the entry lets go of the task: no cycle
        # what asyncio.timeout's TimeoutError would be (ours), or a TimeoutError raised
        # inside while ours expired: the deadline's, as in _run_timed
        if not entry.timed_out(exc) and not (entry.expiring and isinstance(exc, TimeoutError)):
            raise
    else:
        deadlines.leave(duration, entry)
        return result
    raise _timed_out(p)  # outside the except: no context, as from _run_timed


async def _run_timed(p: Plan) -> Any:
    """:func:`run_plan` under ``asyncio.timeout`` (a call past its deadline already, one
    out of the queue's order, a run handed over: no deadline, a plan without a queue)."""
    # asyncio's own timeout and sleep, not anyio's: the client runs on asyncio only
    # (aiohttp), and these cost a third as much on the path every poll takes
    started = p.started or 0.0
    left = p.settings.poll_timeout - (time.monotonic() - started) if p.bounded else math.inf
    deadline = asyncio.timeout(None if math.isinf(left) else max(left, 0.0))
    try:
        async with deadline:
            return await _poll(p)
    except asyncio.CancelledError:
        # the task keeps its CancelledError, whose traceback holds this frame: without
        # this the timeout (which holds the task) would make a cycle of every frame of
        # the call, left for the cyclic GC (74 objects per cancelled login)
        del deadline
        raise
    except TimeoutError:
        if not deadline.expired():
            raise  # not ours
    # Only the deadline gets here.
    raise _timed_out(p)


def _timed_out(p: Plan) -> PollTimeoutError:
    """The call's :class:`PollTimeoutError`, at its deadline."""
    elapsed = time.monotonic() - (p.started or 0.0)
    s = p.settings
    return PollTimeoutError(
        f"still pending after {elapsed:.1f}s and {p.polls} polls (poll_timeout={s.poll_timeout}s)",
        attempts=p.polls,
        elapsed=elapsed,
        login_id=p.login_id,
        request_id=p.request_id,
        endpoint=p.endpoint.name,
    )


async def _session(p: Plan) -> tuple[Request, Request]:
    """Authorize for ``p`` (its session is new: post first), run what the row needs first
    in it (``endpoint.after``); its first request and poll."""
    p.request_id = rid = (await p.authorize(p.login_id)).request_id or ""
    p.prepared = not p.endpoint.after  # nothing to run first: no coroutine for it
    if not p.prepared:
        await _prepare(p, rid)
    return _calls(p, rid)


async def _no_new_session(login_id: str) -> Authorization:
    """The ``authorize`` of a chain's first step: a session error there ends the step
    (the chain starts again from Authorize, see :func:`_poll`)."""
    raise SessionExpiredError(
        "the session ended while its GetAccountsDetail ran", login_id=login_id
    )


async def _prepare(p: Plan, rid: str) -> None:
    """Run each of ``p.endpoint.after`` in session ``rid`` until its 200 (the answer is
    dropped: ask for it with ``request_id=`` if you want it too), unless done already."""
    if p.prepared:
        return
    for before in p.endpoint.after:
        step = Plan(
            endpoint=before,
            login_id=p.login_id,
            request_id=rid,
            body={},
            settings=p.settings,
            decode=ModelDecoder.of(before.model, raw=True),
            url=before.route.url(before.route.base(p.settings), login_id=p.login_id),
            headers=p.headers,
            transport=p.transport,
            authorize=_no_new_session,
            started=p.started,
            webhooks=p.webhooks,
        )
        try:
            await _poll(step)
        finally:
            p.polls += step.polls
    p.prepared = True


async def _poll(p: Plan) -> Any:
    """Steps 1 to 4 of the polling rule (the module docstring), without the deadline."""
    reauthorized = False
    while True:
        try:
            return await _attempt(p)
        except SessionExpiredError:
            if reauthorized or p.authorize is _no_new_session:
                raise
            reauthorized = True
            p.posted = False
            p.request_id = None


async def _attempt(p: Plan) -> Any:
    """One session's go: Authorize (unless it has one), the row's first request, then
    its polls until the 200."""
    if p.request_id is None:
        post, poll = await _session(p)
    else:  # a caller's session, or a run handed over: its chain's first calls, if not done
        await _prepare(p, p.request_id)
        post, poll = _calls(p, p.request_id)
    call = poll if p.posted else post
    transport = p.transport
    while True:
        reply = await transport.send(call)
        p.posted = True
        if reply.status == 200:
            return reply.value
        del reply  # hold nothing of the 202 while sleeping: thousands of pollers wait
        p.polls += 1
        pushed = await _wait(p, call.request_id or "")
        if pushed is not None:
            return await _pushed(p, call.request_id or "", pushed)
        call = poll


def _wait(p: Plan, rid: str) -> Awaitable[bytes | None]:
    """The wait after a 202: ``poll_interval`` (or, with webhooks, in their grace,
    ``webhook_poll_interval``) +-``poll_jitter``; with webhooks, the body of the one that
    came meanwhile, else ``None``. Not a coroutine of its own: the sleep (or the hub's
    wait) itself, with no frame of ours for its wake-up to resume through."""
    s = p.settings
    transport = p.transport
    hub = p.webhooks if p.endpoint.response_type else None  # never pushed: polled
    interval = s.poll_interval
    if hub is not None and time.monotonic() - (p.started or 0.0) < s.webhook_grace:
        interval = s.webhook_poll_interval
    delay = interval * random.uniform(1 - s.poll_jitter, 1 + s.poll_jitter)
    if transport.hooks or scoped_hooks.get():
        name, n = p.endpoint.name, p.polls
        transport.emit(Event("pending", name, p.login_id, rid, n, 202, delay=delay))
    if hub is None:
        return asyncio.sleep(delay)  # None
    return hub.wait(rid, delay)
