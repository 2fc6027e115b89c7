"""Event hooks, OpenTelemetry spans and structured log fields."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flinks_async import Event, InvalidRequestError, LoginError, ResponseTooLargeError
from flinks_async.testing import Emulator

from .conftest import API_KEY, SECRET, fast_client

pytestmark = pytest.mark.anyio

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_PROVIDER)


async def test_single_calls_emit_started_and_done(emu: Emulator, login_ids: list[str]) -> None:
    events: list[Event] = []
    emu.set_login(login_ids[1], faults=["INVALID_LOGIN@data"])
    async with fast_client(emu, event_hooks=[events.append]) as client:
        await client.investments(login_ids[0])
        with pytest.raises(LoginError):
            await client.accounts_detail(login_ids[1])
    done = [e for e in events if e.kind == "done"]
    assert [(e.endpoint, e.error is None) for e in done] == [
        ("Investments", True),
        ("GetAccountsDetail", False),
    ]
    assert all(e.elapsed is not None and e.elapsed > 0 for e in done)
    assert [e.kind for e in events][:2] == ["started", "request"]


async def test_a_failing_hook_is_logged_not_raised(
    emu: Emulator, login: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("hook bug")

    async with fast_client(emu, event_hooks=[broken]) as client:
        assert (await client.investments(login)).accounts
    assert "event hook" in caplog.text


async def test_spans_nest_and_hold_no_secret(emu: Emulator, login: str) -> None:
    _EXPORTER.clear()
    emu.set_login(login, pending=1, faults=["http_503@data"])
    async with fast_client(emu, tracing=True) as client:
        await client.investments(login)
    spans = _EXPORTER.get_finished_spans()
    call = next(s for s in spans if s.name == "flinks Investments")
    children = [
        s for s in spans if s.parent is not None and s.parent.span_id == call.context.span_id
    ]
    names = [s.name for s in children]
    assert "POST Authorize" in names and names.count("POST Investments") == 3  # 503, 202, 200
    attrs = [dict(s.attributes or {}) for s in children]
    failed = next(a for a in attrs if a.get("http.response.status_code") == 503)
    assert failed["error.type"] == "TransientAPIError"
    text = repr([(s.name, dict(s.attributes or {}), s.status.description) for s in spans])
    assert API_KEY not in text and SECRET not in text and login not in text
    assert dict(call.attributes or {})["flinks.login_id"] == login[:8] + "…"


async def test_structured_log_fields(
    emu: Emulator, login: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="flinks_async"):
        async with fast_client(emu) as client:
            await client.investments(login)
    record = next(r for r in caplog.records if getattr(r, "flinks_status", None) == 202)
    assert record.flinks_endpoint == "Investments"  # type: ignore[attr-defined]
    assert record.flinks_method == "POST"  # type: ignore[attr-defined]
    assert record.flinks_login_id == login[:8] + "…"  # type: ignore[attr-defined]
    assert record.flinks_attempt == 1  # type: ignore[attr-defined]
    assert record.flinks_request_id  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("endpoint", "fault", "error"),
    [
        ("Authorize", "redirect@authorize", InvalidRequestError),
        ("Investments", "huge:2000000", ResponseTooLargeError),
    ],
)
async def test_failures_found_while_reading_end_their_span_in_error_and_are_logged(
    emu: Emulator,
    login: str,
    endpoint: str,
    fault: str,
    error: type[Exception],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _EXPORTER.clear()
    emu.set_login(login, pending=0, faults=[fault])
    with caplog.at_level(logging.DEBUG, logger="flinks_async"):
        async with fast_client(emu, tracing=True, max_response_bytes=1_000_000) as client:
            with pytest.raises(error) as info:
                await client.investments(login)
    attempt = next(s for s in _EXPORTER.get_finished_spans() if s.name == f"POST {endpoint}")
    assert attempt.status.status_code == trace.StatusCode.ERROR
    assert dict(attempt.attributes or {})["error.type"] == error.__name__
    logged = [r for r in caplog.records if getattr(r, "flinks_endpoint", None) == endpoint]
    assert any(str(info.value) in r.getMessage() for r in logged)
