"""docs/sync.md's examples, run against the emulator: a script, a Django app's views and
a Celery app's tasks. Django and Celery are not dependencies: when they are not
installed, the examples import small stand-ins for the few names they use (what is
tested is the client's usage, not the frameworks)."""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flinks_async import SyncFlinksClient, sign_webhook
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import API_KEY, CUSTOMER, SECRET

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
HOOK_SECRET = "sync-examples-hook-secret"


@pytest.fixture
def flinks_env(emu_thread: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "FLINKS_CUSTOMER_ID": CUSTOMER,
        "FLINKS_BASE_URL": emu_thread.url,
        "FLINKS_API_KEY": API_KEY,
        "FLINKS_SECRET_KEY": SECRET,
        "FLINKS_WEBHOOK_SECRET": HOOK_SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


#: the frameworks installed here (then the examples import the real ones)
INSTALLED = {name for name in ("django", "celery") if importlib.util.find_spec(name)}


def _module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> None:
    if name.split(".")[0] in INSTALLED:
        return
    for i in range(1, name.count(".") + 2):
        part = ".".join(name.split(".")[:i])
        monkeypatch.setitem(sys.modules, part, sys.modules.get(part, types.ModuleType(part)))
    for key, value in attrs.items():
        setattr(sys.modules[name], key, value)


class _Response:
    def __init__(self, content: Any = b"", status: int = 200, **kwargs: Any) -> None:
        self.content, self.status_code = content, status


class _JsonResponse(_Response):
    def __init__(self, data: Any, status: int = 200) -> None:
        super().__init__(json.dumps(data).encode(), status)


def _shared_task(*args: Any, **options: Any) -> Any:
    """Celery's ``@shared_task`` and ``@shared_task(...)``: the function, as it runs."""
    return args[0] if args and callable(args[0]) else lambda task: task


def ready(emu: Emulator, ids: list[str]) -> list[str]:
    """``ids``, answered at once (the examples poll at the real interval, 10 s)."""
    for login in ids:
        emu.set_login(login, pending=0)
    return ids


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], dict[str, Any]]]:
    """Run ``docs/examples/<name>.py`` (with Django's and Celery's stand-ins if needed);
    its globals. Its client is closed after the test."""
    stand_ins = {"HttpRequest": object, "HttpResponse": _Response, "JsonResponse": _JsonResponse}
    _module(monkeypatch, "django.http", **stand_ins)
    _module(monkeypatch, "django.views.decorators.csrf", csrf_exempt=lambda view: view)
    _module(monkeypatch, "celery", shared_task=_shared_task)
    clients: list[SyncFlinksClient] = []

    def run(name: str) -> dict[str, Any]:
        module = runpy.run_path(str(EXAMPLES / f"{name}.py"))
        clients.append(module["flinks"])
        return module

    yield run
    for client in clients:
        client.close()


def test_the_script(emu_thread: Emulator, flinks_env: dict[str, str]) -> None:
    ids = ready(emu_thread, demo_login_ids(3, seed=3410))
    env = {**os.environ, **flinks_env, "LOGIN_IDS": ",".join(ids)}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "sync_script.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.count(" ok\n") == 3


def test_the_django_views(
    emu_thread: Emulator, flinks_env: dict[str, str], example: Callable[[str], dict[str, Any]]
) -> None:
    views = example("sync_django")
    login, disabled, slow = ready(emu_thread, demo_login_ids(3, seed=3411))
    emu_thread.set_login(disabled, pending=0, faults=["DISABLED_LOGIN"])
    ok = views["accounts"](object(), login)
    assert ok.status_code == 200 and json.loads(ok.content)["balances"]
    assert views["accounts"](object(), disabled).status_code == 409
    quick = views["flinks"].with_options(poll_timeout=0.1)  # a quick "25 s"
    views["accounts"].__globals__["web"] = quick
    emu_thread.set_login(slow, pending=10**6)
    assert views["accounts"](object(), slow).status_code == 202
    body = b'{"ResponseType": "GetAccountsSummary", "RequestId": "r-9", "HttpStatusCode": 200}'
    request = types.SimpleNamespace(
        headers={"Flinks-Authenticity-Key": sign_webhook(body, HOOK_SECRET)}, body=body
    )
    assert views["flinks_webhook"](request).status_code == 200
    request.headers = {"Flinks-Authenticity-Key": sign_webhook(b"forged", HOOK_SECRET)}
    assert views["flinks_webhook"](request).status_code == 401


def test_the_celery_tasks(
    emu_thread: Emulator, flinks_env: dict[str, str], example: Callable[[str], dict[str, Any]]
) -> None:
    tasks = example("sync_celery")
    ids = ready(emu_thread, demo_login_ids(5, seed=3412))
    emu_thread.set_login(ids[0], pending=0, faults=["DISABLED_LOGIN"])
    assert tasks["refresh_transactions"](ids[1]) > 0
    assert tasks["nightly_balances"](ids) == {"ok": 4, "failed": 1}
