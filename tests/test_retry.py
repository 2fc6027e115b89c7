"""Backoff bounds, Retry-After parsing and jitter."""

from __future__ import annotations

import email.utils
import random
import time

import pytest

from flinks_async._retry import backoff_delay, parse_retry_after, retry_delay


@pytest.mark.parametrize("retry", [1, 2, 3, 10, 100, 10_000])
def test_backoff_stays_within_documented_bounds(retry: int) -> None:
    rng = random.Random(retry)
    base = min(30.0, 1.0 * 2 ** min(retry - 1, 62))
    for _ in range(200):
        delay = backoff_delay(retry, initial=1.0, maximum=30.0, rng=rng)
        assert base / 2 <= delay <= base


def test_retry_after_raises_the_delay_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    waits = [
        retry_delay(1, 5.0, initial=0.1, maximum=1.0, max_retry_after=120, rng=rng)
        for _ in range(500)
    ]
    assert all(5.0 <= w <= 6.0 for w in waits)  # 1.0 .. 1.2 x Retry-After
    assert max(waits) - min(waits) > 0.8  # spread, not all at the same instant
    capped = retry_delay(1, 1e9, initial=0.1, maximum=1.0, max_retry_after=120, rng=rng)
    assert 120 <= capped <= 144
    assert retry_delay(1, None, initial=0.1, maximum=1.0, max_retry_after=120) <= 0.1


def test_parse_retry_after_takes_exactly_what_rfc_9110_allows() -> None:
    now = time.time()
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 120 ") == 120.0
    future = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (parse_retry_after(future, now=now) or 0) <= 31
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    # the three HTTP-date forms of RFC 9110 section 5.6.7, for the same instant
    epoch = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
    for form in (
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ):
        assert parse_retry_after(form, now=epoch - 10) == 10.0, form
    for garbage in (
        None, "", "soon", "-5", "+5", "1_000", "1.5", "nan", "inf", "0x10", "5 s",
        "Mon, 99 Foo 2020", "Sun Nov 6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37 PST",
    ):  # fmt: skip
        assert parse_retry_after(garbage) is None, garbage
