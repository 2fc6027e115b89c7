"""Retry policy: what is retried, the backoff formula and ``Retry-After`` parsing.

What is retried (by the transport, ``max_retries`` times): a connection error, a torn
body, HTTP 429 and every 5xx, and the FlinksCodes of :data:`RETRYABLE_CODES` (those whose
error is a :class:`~flinks_async.TransientAPIError`). A session error
(``SESSION_NONEXISTENT``/``SESSION_EXPIRED``) is not retried here: the poller authorizes
once more. :data:`FATAL_CODES` fail at once.

Backoff (stamina-style capped exponential with "equal jitter")::

    base(n)  = min(backoff_max, backoff_initial * 2 ** (n - 1))      # n = retry number, from 1
    delay(n) = base(n) * uniform(0.5, 1.0)

so ``base(n) / 2 <= delay(n) <= base(n)``. With the defaults (``backoff_initial=1.0``,
``backoff_max=30.0``, ``max_retries=3``) the three retries wait 0.5-1 s, 1-2 s, 2-4 s.

When the answer carries ``Retry-After`` (RFC 9110: delta-seconds, or an HTTP date in any of
its three forms), with ``ra = min(retry_after, max_retry_after)`` (default cap 120 s, so a
hostile or broken header cannot park a job for hours)::

    delay(n) = max(delay(n), ra * uniform(1.0, 1.0 + RETRY_AFTER_JITTER))   # 1.0 .. 1.2 x ra

The server's hint is a lower bound; the jitter on top spreads the logins that were told
"1 second" at the same moment over 200 ms instead of sending them back together. A 429 or
``TOO_MANY_REQUESTS`` also pauses the whole client for ``ra`` (see
:mod:`flinks_async._transport`).
"""

from __future__ import annotations

import calendar
import random
import re
import time

from ._errors import CODE_CLASSES, SessionExpiredError, TransientAPIError

__all__ = [
    "FATAL_CODES",
    "RETRYABLE_CODES",
    "RETRY_AFTER_JITTER",
    "backoff_delay",
    "parse_retry_after",
    "retry_delay",
]

#: FlinksCodes that are retried with backoff (plus HTTP 429 and every 5xx).
RETRYABLE_CODES = frozenset(c for c, k in CODE_CLASSES.items() if issubclass(k, TransientAPIError))
#: FlinksCodes that fail at once, without retry (a session error re-authorizes instead).
FATAL_CODES = frozenset(
    c for c, k in CODE_CLASSES.items() if not issubclass(k, TransientAPIError | SessionExpiredError)
)

#: Retry-After waits are stretched by ``uniform(1, 1 + RETRY_AFTER_JITTER)``.
RETRY_AFTER_JITTER = 0.2

_DELTA = re.compile(r"[0-9]+")
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_TIME = r"(\d\d):(\d\d):(\d\d)"
# RFC 9110 section 5.6.7: IMF-fixdate, the obsolete RFC 850 form and asctime, all in GMT.
_IMF = re.compile(rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) ({_MONTHS}) (\d{{4}}) {_TIME} GMT")
_RFC850 = re.compile(
    rf"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rf"(\d\d)-({_MONTHS})-(\d\d) {_TIME} GMT"
)
_ASCTIME = re.compile(rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ({_MONTHS}) ([ \d]\d) {_TIME} (\d{{4}})")
_MONTH_NUMBER = {name: i for i, name in enumerate(_MONTHS.split("|"), 1)}


def backoff_delay(
    retry: int, *, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """``min(maximum, initial * 2 ** (retry - 1)) * uniform(0.5, 1.0)`` for ``retry >= 1``."""
    exponent = min(max(retry, 1) - 1, 62)
    base = min(maximum, initial * (2.0**exponent))
    return base * (rng or random).uniform(0.5, 1.0)


def _http_date(value: str) -> float | None:
    """Seconds since the epoch of an RFC 9110 HTTP date, or ``None``."""
    if m := _IMF.fullmatch(value):
        day, month, year, hh, mm, ss = m.groups()
    elif m := _RFC850.fullmatch(value):
        day, month, yy, hh, mm, ss = m.groups()
        # RFC 9110: a two-digit year more than 50 years in the future is in the past century
        this_year = time.gmtime().tm_year
        year = str(2000 + int(yy)) if 2000 + int(yy) <= this_year + 50 else str(1900 + int(yy))
    elif m := _ASCTIME.fullmatch(value):
        month, day, hh, mm, ss, year = m.groups()
    else:
        return None
    fields = (int(year), _MONTH_NUMBER[month], int(day), int(hh), int(mm), int(ss))
    if not (1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60 and fields[5] <= 60):
        return None
    return float(calendar.timegm((*fields, 0, 0, 0)))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, exactly as RFC 9110 allows it.

    ``delay-seconds`` is one or more ASCII digits (``"1_000"``, ``"+5"``, ``"1.5"`` and
    ``"-5"`` are not); an HTTP date is an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``),
    the obsolete RFC 850 form (``Sunday, 06-Nov-94 08:49:37 GMT``) or asctime
    (``Sun Nov  6 08:49:37 1994``). Surrounding spaces are ignored. Returns ``None`` for a
    missing or malformed header and ``0.0`` for a date in the past.
    """
    if not value:
        return None
    value = value.strip(" \t")
    if _DELTA.fullmatch(value):
        return float(int(value))
    when = _http_date(value)
    if when is None:
        return None
    return max(0.0, when - (time.time() if now is None else now))


def retry_delay(
    retry: int,
    retry_after: float | None,
    *,
    initial: float,
    maximum: float,
    max_retry_after: float,
    rng: random.Random | None = None,
) -> float:
    """The wait before retry ``retry``: the backoff, raised to a capped, jittered
    ``Retry-After`` (formula in the module docstring)."""
    rng = rng or random.Random()
    delay = backoff_delay(retry, initial=initial, maximum=maximum, rng=rng)
    if retry_after is not None:
        hint = min(retry_after, max_retry_after)
        delay = max(delay, hint * rng.uniform(1.0, 1.0 + RETRY_AFTER_JITTER))
    return delay
