"""One data call, around its :class:`~flinks_async._polling.Plan`: what the client does
besides polling.

* :func:`flight_key`: the single-flight key. Calls share one run when they ask the same
  endpoint for the same login (case-insensitive), with the same ``request_id``, ``raw``,
  request options and call options (a 25 s :meth:`~FlinksClient.with_options` view never
  joins a 30-minute run).
* :func:`observed`: a call with event hooks or tracing on, wrapped in its ``started`` /
  ``done`` events and its span (``flinks {Endpoint}``).
* :func:`shared_run`: a call run once among every process on a Redis
  (:class:`~flinks_async._coordination.SharedFlights`); the run hands over the 200 body and
  each caller decodes it, each with its own deadline.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Coroutine, Hashable
from typing import Any

from . import _otel
from ._coordination import FlightDeadline, SharedFlights
from ._decoding import Decoder, decode_answer
from ._errors import PollTimeoutError
from ._events import Event, dispatch, scoped_hooks
from ._polling import Plan, run_plan

__all__ = ["flight_key", "observed", "shared_run"]


def flight_key(plan: Plan, raw: bool, encoded: bytes, call_options: tuple[Any, ...]) -> Hashable:
    """The single-flight key of ``plan`` (``encoded``: its request options as sent)."""
    return (plan.endpoint.key, plan.login_id.lower(), plan.request_id, raw, encoded, call_options)


async def observed(run: Coroutine[Any, Any, Any], plan: Plan, tracer: Any) -> Any:
    """Await ``run`` (the call of ``plan``) between its ``started`` and ``done`` events,
    inside its span when ``tracer`` is set."""
    transport = plan.transport
    hooks = transport.hooks or scoped_hooks.get()
    name, login_id = plan.endpoint.name, plan.login_id
    if hooks:
        dispatch(transport.hooks, Event("started", name, login_id))
    started = time.monotonic()
    span = None
    if tracer is not None:
        attributes = {
            "flinks.endpoint": name,
            "flinks.login_id": plan.settings.shown_login_id(login_id),
        }
        span = tracer.start_span(f"flinks {name}", attributes=attributes)
    try:
        if span is not None:
            with _otel.use_span(span):
                result = await run
        else:
            result = await run
    except BaseException as exc:
        if span is not None:
            _otel.error_status(span, exc)
        if hooks and isinstance(exc, Exception):
            elapsed = time.monotonic() - started
            dispatch(transport.hooks, Event("done", name, login_id, elapsed=elapsed, error=exc))
        raise
    finally:
        if span is not None:
            span.end()
    if hooks:
        dispatch(transport.hooks, Event("done", name, login_id, elapsed=time.monotonic() - started))
    return result


async def shared_run(
    flights: SharedFlights,
    key: Hashable,
    plan: Plan,
    decode: Decoder | None,
) -> Any:
    """Run ``plan`` (which returns the 200 body's bytes) once among every process sharing
    ``flights``, then ``decode`` the body here (``None``: return the bytes).

    The deadline is this caller's own: ``poll_timeout`` from when it began, whether it
    waits on another process's run or runs it (a run taken over, with its RequestId,
    polls for what is left); none once the run goes on for this process's other callers
    (``plan.bounded`` False)."""
    if plan.started is None:
        plan.started = time.monotonic()
    started = plan.started
    timeout = plan.settings.poll_timeout
    login_id, endpoint = plan.login_id, plan.endpoint.name
    try:
        body = await flights.run(
            key,
            functools.partial(run_plan, plan),
            login_id=login_id,
            deadline=started + timeout if plan.bounded else None,
            progress=plan,
        )
    except FlightDeadline as exc:
        elapsed = time.monotonic() - started
        raise PollTimeoutError(
            f"still pending after {elapsed:.1f}s and {plan.polls} polls, waiting on another "
            f"process's run (poll_timeout={timeout}s)",
            attempts=plan.polls,
            elapsed=elapsed,
            login_id=login_id,
            request_id=exc.request_id or plan.request_id,
            endpoint=endpoint,
        ) from None
    if decode is None:
        return body
    # the run handed over a 200's body (not its RequestId: another process may have run it)
    return await decode_answer(
        decode, body, login_id=login_id, endpoint=endpoint, request_id=None, http_status=200
    )
