"""Secrets never reach logs, messages or tracebacks; login ids are shortened by default."""

from __future__ import annotations

import logging
import traceback

import pytest

from flinks_async import FlinksClient, FlinksError
from flinks_async.testing import Emulator

from .conftest import API_KEY, SECRET, fast_client

pytestmark = pytest.mark.anyio


async def test_debug_logs_hold_no_secret_and_short_login_ids(
    emu: Emulator, login: str, caplog: pytest.LogCaptureFixture
) -> None:
    emu.set_login(
        login, faults=["http_503@authorize", "rate_limit:0@data", "SESSION_NONEXISTENT@data"]
    )
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG, logger="flinks_async"):
        async with fast_client(emu) as client:
            await client.investments(login)
            tokens = {
                r.headers["flinks-auth-key"] for r in emu.requests if r.endpoint == "Authorize"
            }
            emu.set_login(login, faults=["INVALID_LOGIN@data"])
            try:
                await client.investments(login)
            except FlinksError as exc:
                errors.append("".join(traceback.format_exception(exc)))
                errors.append(repr(exc))
    text = caplog.text + "".join(errors) + "".join(repr(r.__dict__) for r in caplog.records)
    assert caplog.records, "DEBUG logging should describe each request"
    for secret in (API_KEY, SECRET, *tokens):
        assert secret not in text
    assert login not in text
    assert login[:8] + "…" in text
    records = [r for r in caplog.records if getattr(r, "flinks_endpoint", None)]
    assert {"Authorize", "Investments"} <= {r.flinks_endpoint for r in records}  # type: ignore[attr-defined]
    assert all(not hasattr(r, "flinks_body") for r in records)


async def test_full_login_ids_only_when_asked(
    emu: Emulator, login: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="flinks_async"):
        async with fast_client(emu, redact_login_ids=False) as client:
            await client.authorize(login)
    assert login in caplog.text


async def test_silent_by_default(
    emu: Emulator, login: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        async with fast_client(emu) as client:
            await client.investments(login)
    assert not [r for r in caplog.records if r.name.startswith("flinks_async")]


async def test_bodies_logged_only_on_opt_in(
    emu: Emulator, login: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="flinks_async"):
        async with fast_client(emu) as client:
            await client.investments(login)
        assert "Positions" not in caplog.text
        async with fast_client(emu, log_bodies=True) as client:
            await client.investments(login)
        assert "Positions" in caplog.text


def test_client_repr_does_not_need_a_loop() -> None:
    client = FlinksClient("43387ca6-0391-4c82-857d-70d95f087ecb", api_key=API_KEY)
    assert API_KEY not in repr(client)
