"""The Enrich page's examples (docs/enrich.md), run: the FastAPI handler served for real
against the emulator, the nightly pull run."""

from __future__ import annotations

import pathlib
import runpy

import aiohttp
import anyio
import pytest

from flinks_async.testing import Emulator, demo_login_ids

from .test_examples import _serve_fastapi, web_app_env

pytestmark = pytest.mark.anyio
ROOT = pathlib.Path(__file__).resolve().parent.parent


async def test_the_income_handler_answers_from_one_session(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    web_app_env(monkeypatch, emu)
    module = runpy.run_path(str(ROOT / "docs" / "examples" / "enrich_web_app.py"))
    serve = _serve_fastapi(module["app"])
    url = await serve.__anext__()
    login = demo_login_ids(1, seed=3330)[0]
    emu.set_login(login, pending=0)  # the app polls every 10 s: answer at once
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/income/{login}") as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.json()
    finally:
        await serve.aclose()
    assert body["accounts"] >= 1 and "employer" in body
    assert emu.authorizations[login.lower()] == 1
    assert emu.counts["GetAccountsDetail"] == 1


def test_the_nightly_pull_writes_a_line_per_login(capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(ROOT / "docs" / "examples" / "enrich_nightly.py"))
    anyio.run(module["main"])
    assert capsys.readouterr().out == "100 logins written, 0 failed, 5 requests per login\n"
