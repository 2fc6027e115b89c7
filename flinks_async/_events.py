"""Events the client emits, for progress bars and metrics.

Attach a callable with ``FlinksClient(event_hooks=[fn])`` (every call of the client) or
``client.many(..., on_event=fn)`` (that fan-out only). A hook is called synchronously in
the event loop, so it must be quick and must not raise (an exception is logged and
dropped). Login ids in events are full: redact before exporting them.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
from collections.abc import Callable
from typing import Literal

__all__ = ["Event", "EventHook", "EventKind"]

EventKind = Literal[
    "request", "response", "retry", "pending", "started", "done", "schema_drift", "webhook"
]

log = logging.getLogger("flinks_async")


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened.

    kinds:
      ``request``: an HTTP request is about to be sent (``attempt`` counts from 1);
      ``response``: its answer arrived (``status``, ``elapsed`` in seconds);
      ``retry``: a transient failure, the next attempt in ``delay`` seconds (``error``);
      ``pending``: a 202, the next poll in ``delay`` seconds (``attempt`` = polls so far);
      ``started`` / ``done``: a data call (one login, one endpoint) starts / ends, single
      calls and fan-outs alike (``done`` has ``elapsed``, and ``error`` when it failed);
      ``webhook``: a pending data call's answer came by webhook (``elapsed``: seconds
      since the call started);
      ``schema_drift``: an answer held a key or type the models do not map (``detail``:
      ``"Model.'Key'"``; see :mod:`flinks_async._schema`).
    """

    kind: EventKind
    endpoint: str | None = None
    login_id: str | None = None
    request_id: str | None = None
    attempt: int = 0
    status: int | None = None
    elapsed: float | None = None
    delay: float | None = None
    error: BaseException | None = None
    detail: str | None = None


EventHook = Callable[[Event], None]

#: Hooks of the fan-out the current task belongs to.
scoped_hooks: contextvars.ContextVar[tuple[EventHook, ...]] = contextvars.ContextVar(
    "flinks_async_hooks", default=()
)


def dispatch(hooks: tuple[EventHook, ...], event: Event) -> None:
    """Request every hook, then the fan-out's; a hook's exception is logged, not raised."""
    for hook in (*hooks, *scoped_hooks.get()):
        try:
            hook(event)
        except Exception:
            log.exception("flinks_async event hook %r failed", hook)
