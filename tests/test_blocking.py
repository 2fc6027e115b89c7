"""The blocking client: every call of the async one, from threads, forks and Ctrl-C.

The emulator serves from its own thread (``emu_thread``); the tests own the main thread
and call the client as sync code does. Scripts that must be interrupted, forked or left
to exit run in a subprocess against that emulator.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

from flinks_async import (
    AccountsDetail,
    AccountsSummary,
    Attributes,
    Categorization,
    ClientClosedError,
    ConfigurationError,
    FlinksClient,
    InvalidLoginIdError,
    Investments,
    PollTimeoutError,
    Statements,
    SyncFlinksClient,
)
from flinks_async.testing import Emulator, demo_login_ids

from .conftest import API_KEY, CUSTOMER, SECRET, fast_options, fast_sync_client


def wait_for(condition: object, timeout: float = 10.0) -> None:
    """Wait until ``condition()`` is true (every 5 ms), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def quiet(emu: Emulator, window: float = 0.15) -> int:
    """Nothing reaches ``emu`` for ``window`` seconds (many poll intervals), once a
    request already on the wire has had 50 ms to land: the count it stays at."""
    time.sleep(0.05)
    seen = emu.requests_total
    time.sleep(window)
    assert emu.requests_total == seen, "requests went out after the call ended"
    return seen


def settle(emu: Emulator, window: float = 0.15) -> None:
    """Wait until nothing reaches ``emu`` for ``window`` seconds."""
    seen = -1
    while emu.requests_total != seen:
        seen = emu.requests_total
        time.sleep(window)


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "flinks-async-loop"]


def test_calls_answer_what_the_async_client_answers(sync_client: SyncFlinksClient) -> None:
    ids = demo_login_ids(3, seed=340)
    assert isinstance(sync_client.investments(ids[0]), Investments)
    detail = sync_client.accounts_detail(ids[1], days_of_transactions="Days90")
    assert isinstance(detail, AccountsDetail)
    assert sync_client.raw.accounts_summary(ids[2]).startswith(b"{")
    auth = sync_client.authorize(ids[0])
    assert isinstance(sync_client.statements(ids[0], request_id=auth.request_id), Statements)
    assert isinstance(sync_client.fetch("accounts-summary", ids[1]), AccountsSummary)
    sync_client.delete_card(ids[2])
    view = sync_client.with_options(poll_timeout=7, max_retries=1)
    assert (view.settings.poll_timeout, view.settings.max_retries) == (7, 1)
    assert sync_client.settings.poll_timeout == 20.0
    assert isinstance(view.investments(ids[1]), Investments)
    assert sync_client.requests_sent > 0 and sync_client.schema_drift == {}
    assert "open" in repr(sync_client) and SECRET not in repr(sync_client)
    assert len(loop_threads()) == 1  # the view shares the client's loop


def test_same_errors_as_the_async_client(emu_thread: Emulator) -> None:
    with pytest.raises(TypeError, match="max_conections"):
        SyncFlinksClient(CUSTOMER, max_conections=3)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError):
        SyncFlinksClient(CUSTOMER, poll_interval=-1)
    with fast_sync_client(emu_thread) as client:
        with pytest.raises(InvalidLoginIdError):
            client.investments("not-a-guid")
        with pytest.raises(ConfigurationError, match="does not take 'with_kyc'"):
            client.statements(demo_login_ids(1)[0], with_kyc=True)  # type: ignore[call-arg]
        with pytest.raises(ConfigurationError, match="days_of_transactions"):
            client.accounts_detail_many([], days_of_transactions="Days30")  # type: ignore[arg-type]
        assert client.requests_sent == 0
        assert not loop_threads() or client.closed is False


def test_many_threads_share_one_client_and_its_polls(sync_client: SyncFlinksClient) -> None:
    ids = demo_login_ids(48, seed=341)
    shared = ids[0]

    def work(i: int) -> str:
        login = shared if i % 4 == 0 else ids[i % len(ids)]
        if i % 3:
            assert isinstance(sync_client.investments(login), Investments)
            return login
        with sync_client.accounts_summary_many([login, ids[(i + 1) % len(ids)]]) as results:
            return min(r.login_id for r in results)

    with ThreadPoolExecutor(32) as pool:
        out = list(pool.map(work, range(200)))
    assert len(out) == 200 and set(out) <= set(ids)
    assert len(loop_threads()) == 1


def test_fan_out_is_a_blocking_iterator_with_back_pressure(
    emu_thread: Emulator, sync_client: SyncFlinksClient
) -> None:
    ids = demo_login_ids(60, seed=342)
    read: list[str] = []

    def source() -> Iterator[str]:
        for login in ids:
            read.append(login)
            yield login

    with sync_client.accounts_detail_many(source(), concurrency=4) as results:
        first = next(results)
        assert isinstance(first.value, AccountsDetail)
        settle(emu_thread)  # the consumer waits: the fan-out stops too
        # 4 in flight, at most 4 more results buffered, one being handed over
        assert len(read) <= 1 + 4 + 4 + 1
        rest = list(results)
    assert {r.login_id for r in [first, *rest]} == set(ids)
    assert results.duplicates == 0
    with sync_client.raw.investments_many([ids[0], ids[0]]) as raw:
        assert [type(r.value) for r in raw] == [bytes]
        assert raw.duplicates == 1


def test_leaving_a_fan_out_stops_its_polls(
    emu_thread: Emulator, sync_client: SyncFlinksClient
) -> None:
    ids = demo_login_ids(8, seed=343)
    for login in ids[1:]:
        emu_thread.set_login(login, pending=10**6)
    with sync_client.many("investments", ids) as results:
        for result in results:
            assert result.login_id == ids[0]
            break
    quiet(emu_thread)
    assert sync_client.in_flight_requests == 0


def test_poll_timeout_is_the_per_call_timeout(
    emu_thread: Emulator, sync_client: SyncFlinksClient
) -> None:
    login = demo_login_ids(1, seed=344)[0]
    emu_thread.set_login(login, pending=10**6)
    with pytest.raises(PollTimeoutError):
        sync_client.investments(login, poll_timeout=0.2)
    sent = sync_client.requests_sent
    assert quiet(emu_thread) == sent  # every request it sent landed; none after
    with pytest.raises(PollTimeoutError):
        sync_client.with_options(poll_timeout=0.1).statements(login)


def test_close_leaves_no_loop_thread_or_connection(emu_thread: Emulator) -> None:
    client = fast_sync_client(emu_thread)
    client.close()  # never started: nothing to stop
    with pytest.raises(ClientClosedError, match="SyncFlinksClient is closed"):
        client.investments(demo_login_ids(1)[0])
    with fast_sync_client(emu_thread) as client:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(client.investments, demo_login_ids(16, seed=345)))
        assert len(loop_threads()) == 1
        assert emu_thread.open_connections > 0
    assert client.closed
    assert loop_threads() == []
    wait_for(lambda: emu_thread.open_connections == 0)
    client.close()  # idempotent
    gc.collect()
    unclosed = [o for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession)]
    assert all(s.closed for s in unclosed)


def run_script(
    tmp_path: Path, code: str, *args: str, signal_after: str | None = None
) -> tuple[int, str, str]:
    """Run ``code`` in a fresh interpreter; with ``signal_after``, send it SIGINT once it
    prints that line. Its exit code, stdout and stderr."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    if signal_after is not None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == signal_after:
                proc.send_signal(signal.SIGINT)
                break
    out, err = proc.communicate(timeout=60)
    return proc.returncode, "".join(lines) + out, err


CLIENT = f"""
import sys, time
from flinks_async import SyncFlinksClient
client = SyncFlinksClient(
    {CUSTOMER!r}, base_url=sys.argv[1], api_key={API_KEY!r}, secret_key={SECRET!r},
    poll_interval=0.005, backoff_initial=0.002, poll_timeout=60,
)
"""


CALL = "client.investments(LOGINS[0])"
FAN_OUT = """
with client.investments_many(LOGINS, concurrency=4) as results:
    for result in results:
        pass
"""


@pytest.mark.parametrize("work", [CALL, FAN_OUT], ids=["call", "fan-out"])
def test_ctrl_c_cancels_the_work_and_its_polling_at_once(
    emu_thread: Emulator, tmp_path: Path, work: str
) -> None:
    ids = demo_login_ids(6, seed=346)
    for login in ids:
        emu_thread.set_login(login, pending=10**6)
    code = (
        CLIENT
        + f"""
import threading
LOGINS = {ids!r}
def started():
    while client.requests_sent < 12:
        time.sleep(0.005)
    print("polling", flush=True)
threading.Thread(target=started, daemon=True).start()
try:
{textwrap.indent(work.strip(), "    ")}
except KeyboardInterrupt:
    at_interrupt = client.requests_sent
    time.sleep(0.3)  # 60 poll intervals
    print(at_interrupt, client.requests_sent, client.in_flight_requests, flush=True)
"""
    )
    code_, out, err = run_script(tmp_path, code, emu_thread.url, signal_after="polling")
    assert code_ == 0, err
    at_interrupt, at_end, in_flight = map(int, out.split()[-3:])
    assert at_interrupt == at_end and in_flight == 0
    assert quiet(emu_thread) == at_end  # the emulator saw exactly those, none later
    assert err == ""  # closed at exit: no "Unclosed" warning


def test_close_from_another_thread_ends_the_calls_waiting(
    emu_thread: Emulator, sync_client: SyncFlinksClient
) -> None:
    login = demo_login_ids(1, seed=350)[0]
    emu_thread.set_login(login, pending=10**6)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            sync_client.investments(login)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: sync_client.requests_sent >= 6)
    sync_client.close()
    for t in threads:
        t.join(10)
    assert len(errors) == 3 and all(isinstance(e, ClientClosedError) for e in errors), errors
    assert loop_threads() == []


def test_a_client_made_before_fork_reopens_in_the_child(
    emu_thread: Emulator, tmp_path: Path
) -> None:
    ids = demo_login_ids(2, seed=347)
    code = (
        CLIENT
        + f"""
import os, threading
client.investments({ids[0]!r})  # the parent's loop and pool are open
pid = os.fork()
if pid == 0:
    names = [t.name for t in threading.enumerate()]
    inv = client.investments({ids[1]!r})  # a new loop, a new pool
    print("child", len(inv.accounts) > 0, names.count("flinks-async-loop"), flush=True)
    client.close()
    sys.exit(0)
_, status = os.waitpid(pid, 0)
print("parent", client.investments({ids[1]!r}) is not None, os.waitstatus_to_exitcode(status))
"""
    )
    code_, out, err = run_script(tmp_path, code, emu_thread.url)
    assert code_ == 0, err
    assert "child True 0" in out and "parent True 0" in out
    assert "Unclosed" not in err, err


def test_a_client_left_open_closes_at_exit(emu_thread: Emulator, tmp_path: Path) -> None:
    code = CLIENT + f"client.investments({demo_login_ids(1, seed=348)[0]!r})\nprint('ok')\n"
    code_, out, err = run_script(tmp_path, code, emu_thread.url)
    assert (code_, out.strip(), err) == (0, "ok", "")
    wait_for(lambda: emu_thread.open_connections == 0)


def test_one_async_client_in_two_asyncio_runs_points_at_the_blocking_one(
    emu_thread: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's first symptom: the error names the blocking client, and the first
    loop's session and pool are let go without asyncio's "Unclosed client session" and
    "Unclosed connector" errors (their sockets, owned by a closed loop, still raise the
    ``ResourceWarning`` Python hides by default, when collected)."""
    client = FlinksClient(CUSTOMER, **fast_options(emu_thread))
    login = demo_login_ids(1, seed=349)[0]
    asyncio.run(client.investments(login))
    with pytest.raises(ClientClosedError, match="use SyncFlinksClient"):
        asyncio.run(client.investments(login))
    del client
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert "Unclosed" not in caplog.text


def test_account_management_calls_block_too(emu_thread: Emulator) -> None:
    login, other = demo_login_ids(2, seed=355)
    emu_thread.accounts.set_login(login, scheduled=False, questions=["Q one?", "Q two?"])
    emu_thread.accounts.set_login(other, ineligible=("AnsweringSecurityChallenge", None))
    with fast_sync_client(emu_thread, nightly_refresh_key="nightly-key-1") as client:
        assert "activated" in client.set_scheduled_refresh(login, True)
        assert client.authorize(login).login.is_scheduled_refresh is True  # type: ignore[union-attr]
        status = client.nightly_refresh_status().by_login_id()
        assert other.lower() in status and login.lower() not in status
        asked = client.mfa_questions(login).questions or []
        assert [q.question for q in asked] == ["Q one?", "Q two?"]
        assert client.answer_mfa_questions(login, {"Q one?": "an answer"}) == "Answers updated"
        every = list(client.institutions())
        assert len(every) == 3000 and emu_thread.counts["Institutions"] == 3  # page after page
        first = client.institutions(page_size=10)
        assert next(first) == every[0]
        first.close()  # left early: its async iterator closed in the loop
        assert emu_thread.counts["Institutions"] == 4
        us = next(i for i in every if i.routing_numbers)
        assert client.institution_by_routing_number(us.routing_numbers[0]) == us  # type: ignore[index]
        assert client.delete_card(login).status_code == 200


def test_enrich_calls_block_too(sync_client: SyncFlinksClient, emu_thread: Emulator) -> None:
    """The table's Enrich rows are blocking methods by themselves (the chain included), and
    its calls outside the table are one line each."""
    login, other = demo_login_ids(2, seed=356)
    income = sync_client.income_attributes(login)
    assert isinstance(income, Attributes) and income.card is not None
    detail = sync_client.accounts_detail(other)  # detail and attributes in one session
    before = emu_thread.counts["Authorize"]
    credit = sync_client.credit_risk_attributes(other, request_id=detail.request_id)
    assert credit.card is not None and emu_thread.counts["Authorize"] == before
    custom = sync_client.custom_attributes(login, ["count_nsf_30_days"])
    assert custom.card is not None and list(custom.card.attributes) == ["count_nsf_30_days"]
    assert sync_client.categories("US") and sync_client.attribute_library(business=True)
    with sync_client.categorization_many([login, other]) as results:
        assert all(r.ok and isinstance(r.value, Categorization) for r in results)
