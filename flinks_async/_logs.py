"""What the transport logs, on the ``flinks_async`` logger.

At DEBUG, one line per HTTP exchange (method, endpoint, status or error, attempt, elapsed
time, request id, login) and one per retry; at INFO, the start of a 429 pause. Each line
carries its fields as ``extra`` (``flinks_method``, ``flinks_endpoint``,
``flinks_login_id``, ``flinks_request_id``, ``flinks_attempt``...). The login id is
shortened unless ``redact_login_ids=False``; bodies (personal data) are logged only with
``log_bodies=True``, at most 2 KB; never a key, a token or a URL (it holds the customer id).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ._config import Settings
from ._errors import FlinksError

if TYPE_CHECKING:
    from ._transport import Request

__all__ = ["extra", "log", "log_exchange"]

log = logging.getLogger("flinks_async")


def extra(settings: Settings, call: Request, **fields: object) -> dict[str, object]:
    """The ``extra`` of a log line about ``call``: its fields, then ``flinks_<name>`` for
    each of ``fields``."""
    return {
        "flinks_method": call.method,
        "flinks_endpoint": call.endpoint,
        "flinks_login_id": settings.shown_login_id(call.login_id),
        "flinks_request_id": call.request_id,
        **{f"flinks_{k}": v for k, v in fields.items()},
    }


def log_exchange(
    settings: Settings,
    call: Request,
    attempt: int,
    started: float,
    status: int,
    error: FlinksError | None,
    body: bytes,
) -> None:
    """The DEBUG line of one exchange (and its body, with ``log_bodies=True``)."""
    elapsed = time.monotonic() - started
    fields = extra(settings, call, attempt=attempt, status=status or None, elapsed=elapsed)
    log.debug(
        "%s %s -> %s attempt=%d elapsed=%.3fs request_id=%s login=%s",
        call.method,
        call.endpoint,
        status if error is None else error,
        attempt,
        elapsed,
        call.request_id or "-",
        fields["flinks_login_id"] or "-",
        extra=fields,
    )
    if settings.log_bodies and error is None:
        log.debug("body of %s (%d bytes): %r", call.endpoint, len(body), body[:2048])
