"""Property-based tests: whatever the bytes, only a model or a typed FlinksError."""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flinks_async import (
    AccountsDetail,
    APIError,
    Authorization,
    DecodeError,
    InvalidLoginIdError,
    Investments,
    Statements,
    parse_date,
    parse_datetime,
)
from flinks_async._answers import answer_error
from flinks_async._authorize import check_login_id
from flinks_async._decoding import ModelDecoder
from flinks_async._redact import is_guid
from flinks_async._retry import RETRY_AFTER_JITTER, backoff_delay, parse_retry_after, retry_delay
from flinks_async._transport import Request
from flinks_async.testing import accounts_payload, investments_payload

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = [Investments, AccountsDetail, Statements, Authorization]
SEEDS = [investments_payload(4_000), accounts_payload(4_000)]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real payload, mutated: truncated, bytes flipped, spliced, or garbage."""
    body = bytearray(draw(st.sampled_from(SEEDS)))
    how = draw(st.sampled_from(["truncate", "flip", "splice", "garbage"]))
    if how == "truncate":
        return bytes(body[: draw(st.integers(0, len(body)))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 20))):
            i = draw(st.integers(0, len(body) - 1))
            body[i] = draw(st.integers(0, 255))
        return bytes(body)
    if how == "splice":
        i = draw(st.integers(0, len(body)))
        return bytes(body[:i]) + draw(st.binary(max_size=50)) + bytes(body[i:])
    return draw(st.binary(max_size=500))


@FAST
@given(body=mutated(), model=st.sampled_from(MODELS), raw=st.booleans())
def test_decoding_yields_a_model_or_a_decode_error(
    body: bytes, model: type[Any], raw: bool
) -> None:
    decode = ModelDecoder.of(model, raw=raw)
    try:
        value = decode(body)
    except DecodeError:
        return
    assert value == body if raw else isinstance(value, model)


@FAST
@given(
    body=st.one_of(mutated(), st.binary(max_size=300)),
    status=st.integers(203, 599).filter(lambda s: s not in (300, 301, 302, 303, 307, 308)),
    content_type=st.sampled_from(["application/json", "text/html", "", "x/y; charset=utf-8"]),
)
def test_any_error_answer_maps_to_a_typed_api_error(
    body: bytes, status: int, content_type: str
) -> None:
    call = Request("POST", "http://x", "Investments", {}, None, "l", "r")
    error = answer_error(call, status, {"Content-Type": content_type}, body)
    assert isinstance(error, APIError)
    assert error.http_status == status
    assert len(error.message) <= 500 + 60


@FAST
@given(st.text(max_size=60))
def test_retry_after_is_none_or_a_finite_non_negative_number(text: str) -> None:
    value = parse_retry_after(text)
    assert value is None or (math.isfinite(value) and value >= 0)


@FAST
@given(st.integers(min_value=0, max_value=10**12))
def test_retry_after_seconds_round_trip(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == seconds


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not f.is_integer()))
def test_retry_after_refuses_anything_but_digits(value: float) -> None:
    assert parse_retry_after(repr(value)) is None  # "1.5", "-2.0e-05", "nan", "inf"


@FAST
@given(
    retry=st.integers(1, 10_000),
    initial=st.floats(0, 100, allow_nan=False),
    maximum=st.floats(0, 1000, allow_nan=False),
    retry_after=st.one_of(st.none(), st.floats(0, 1e15, allow_nan=False)),
    cap=st.floats(0, 600, allow_nan=False),
)
def test_backoff_stays_within_documented_bounds(
    retry: int, initial: float, maximum: float, retry_after: float | None, cap: float
) -> None:
    base = min(maximum, initial * 2.0 ** min(retry - 1, 62))
    plain = backoff_delay(retry, initial=initial, maximum=maximum)
    assert base / 2 - 1e-9 <= plain <= base + 1e-9
    delay = retry_delay(retry, retry_after, initial=initial, maximum=maximum, max_retry_after=cap)
    # Retry-After is stretched by up to RETRY_AFTER_JITTER, never past it
    assert delay <= max(base, cap * (1 + RETRY_AFTER_JITTER)) + 1e-9
    if retry_after is not None:
        assert delay >= min(retry_after, cap) - 1e-9


@FAST
@given(st.uuids())
def test_every_guid_is_a_valid_login_id(value: uuid.UUID) -> None:
    for text in (str(value), str(value).upper()):
        assert check_login_id(text) == text


@FAST
@given(st.one_of(st.text(max_size=50), st.integers(), st.none(), st.binary(max_size=40)))
def test_anything_else_is_refused_with_a_value_error(value: object) -> None:
    hyphenated = isinstance(value, str) and re.fullmatch(
        r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", value
    )
    assume(not hyphenated)
    assert not is_guid(value)
    with pytest.raises(InvalidLoginIdError) as info:
        check_login_id(value)
    assert isinstance(info.value, ValueError)


@FAST
@given(st.text(max_size=40))
def test_date_parsing_never_raises(text: str) -> None:
    day = parse_date(text)
    moment = parse_datetime(text)
    assert day is None or isinstance(day, dt.date)
    assert moment is None or isinstance(moment, dt.datetime)
